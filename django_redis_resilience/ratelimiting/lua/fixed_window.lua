-- Fixed window on Redis time: at most ARGV[2] units per aligned window of ARGV[1] us
-- (up to twice that across a window boundary).
-- KEYS[1]: a hash {w = window number, c = units used in it}.
-- ARGV[1]: period (us); ARGV[2]: limit; ARGV[3]: cost; ARGV[4]: "1" to peek.
-- Returns {allowed, remaining, retry_after_us, reset_after_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local window = math.floor(now / period)
local ends = (window + 1) * period
local state = redis.call('HMGET', KEYS[1], 'w', 'c')
local used = 0
if tonumber(state[1]) == window then
    used = tonumber(state[2])
end
if used + cost > limit then
    return {0, math.max(limit - used, 0), ends - now, ends - now}
end
if ARGV[4] ~= '1' then
    redis.call('HSET', KEYS[1], 'w', string.format('%.0f', window), 'c', used + cost)
    redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', math.ceil(ends / 1000) + 1))
end
return {1, limit - used - cost, 0, ends - now}
