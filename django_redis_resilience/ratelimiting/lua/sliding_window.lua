-- Exact sliding window on Redis time: at most ARGV[2] units in any window of ARGV[1] us.
-- KEYS[1]: a sorted set with one member per admitted unit, scored by its time (us);
-- it never holds more than the limit's worth of members.
-- ARGV[1]: period (us); ARGV[2]: limit; ARGV[3]: cost; ARGV[4]: "1" to peek;
-- ARGV[5]: a token unique to this call (members must not collide).
-- Returns {allowed, remaining, retry_after_us, reset_after_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - period))
local used = redis.call('ZCARD', KEYS[1])
if used + cost > limit then
    local retry = period
    local index = used + cost - limit - 1
    if index < used then
        -- the call fits once the oldest (used + cost - limit) units leave the window
        local oldest = redis.call('ZRANGE', KEYS[1], index, index, 'WITHSCORES')
        retry = tonumber(oldest[2]) + period - now
    end
    local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    local reset = period
    if newest[2] then
        reset = tonumber(newest[2]) + period - now
    end
    return {0, math.max(limit - used, 0), retry, reset}
end
if ARGV[4] ~= '1' then
    local score = string.format('%.0f', now)
    for i = 1, cost do
        redis.call('ZADD', KEYS[1], score, ARGV[5] .. ':' .. i)
    end
    redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000) + 1)
end
return {1, limit - used - cost, 0, period}
