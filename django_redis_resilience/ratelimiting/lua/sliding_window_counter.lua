-- Sliding window counter on Redis time: O(1) memory, approximate. The previous aligned
-- window's count is weighted by how much of it still overlaps the sliding window.
-- KEYS[1]: a hash {w = window number, c = units in it, p = units in the one before}.
-- ARGV[1]: period (us); ARGV[2]: limit; ARGV[3]: cost; ARGV[4]: "1" to peek.
-- Returns {allowed, remaining, retry_after_us, reset_after_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local window = math.floor(now / period)
local elapsed = now - window * period
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local stored = tonumber(state[1])
local current, previous = 0, 0
if stored == window then
    current, previous = tonumber(state[2]) or 0, tonumber(state[3]) or 0
elseif stored == window - 1 then
    previous = tonumber(state[2]) or 0
end
local estimate = previous * (period - elapsed) / period + current
if estimate + cost > limit then
    local retry = period - elapsed
    if previous > 0 and current + cost <= limit then
        -- the previous window's weight falls until the estimate leaves room
        retry = math.max(period - elapsed - (limit - current - cost) * period / previous, 1)
    end
    return {0, math.max(math.floor(limit - estimate), 0), math.ceil(retry), period - elapsed}
end
if ARGV[4] ~= '1' then
    redis.call('HSET', KEYS[1], 'w', string.format('%.0f', window), 'c', current + cost,
        'p', previous)
    redis.call('PEXPIRE', KEYS[1], math.ceil(2 * period / 1000) + 1)
end
return {1, math.max(math.floor(limit - estimate - cost), 0), 0, period - elapsed}
