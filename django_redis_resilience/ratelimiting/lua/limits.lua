-- Check several limits at once, on Redis time, all or nothing: units are consumed only
-- if every limit admits the call. All KEYS must share a cluster slot (hash tags).
-- KEYS[i]: the state of limit i.
-- ARGV[1]: "1" to peek (consume nothing); ARGV[2]: a token unique to this call;
-- then four values per limit: algorithm, a, b, cost, where (a, b) is
--   gcra: (emission interval T in us, burst B): admits at most B + floor(elapsed / T);
--   fixed_window, sliding_window, sliding_window_counter: (period in us, limit).
-- Returns four integers per limit: allowed, remaining, retry_after_us, reset_after_us.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function whole(x)
    return string.format('%.0f', x)
end

local algorithms = {}

function algorithms.gcra(key, interval, burst, cost)
    local tolerance = interval * burst
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then
        tat = now
    end
    local new_tat = tat + interval * cost
    local allow_at = new_tat - tolerance
    if allow_at > now then
        return {0, math.max(math.floor((tolerance - (tat - now)) / interval), 0),
                allow_at - now, tat - now}
    end
    return {1, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now},
        function()
            redis.call('SET', key, whole(new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
        end
end

function algorithms.fixed_window(key, period, limit, cost)
    local window = math.floor(now / period)
    local ends = (window + 1) * period
    local state = redis.call('HMGET', key, 'w', 'c')
    local used = 0
    if tonumber(state[1]) == window then
        used = tonumber(state[2])
    end
    if used + cost > limit then
        return {0, math.max(limit - used, 0), ends - now, ends - now}
    end
    return {1, limit - used - cost, 0, ends - now}, function()
        redis.call('HSET', key, 'w', whole(window), 'c', used + cost)
        redis.call('PEXPIREAT', key, whole(math.ceil(ends / 1000) + 1))
    end
end

function algorithms.sliding_window(key, period, limit, cost, member)
    -- one member per admitted unit, scored by its time: never more than `limit` of them
    redis.call('ZREMRANGEBYSCORE', key, '-inf', whole(now - period))
    local used = redis.call('ZCARD', key)
    if used + cost > limit then
        local retry = period
        local index = used + cost - limit - 1
        if index < used then
            -- the call fits once the oldest (used + cost - limit) units leave the window
            local oldest = redis.call('ZRANGE', key, index, index, 'WITHSCORES')
            retry = tonumber(oldest[2]) + period - now
        end
        local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
        local reset = period
        if newest[2] then
            reset = tonumber(newest[2]) + period - now
        end
        return {0, math.max(limit - used, 0), retry, reset}
    end
    return {1, limit - used - cost, 0, period}, function()
        for i = 1, cost do
            redis.call('ZADD', key, whole(now), member .. ':' .. i)
        end
        redis.call('PEXPIRE', key, math.ceil(period / 1000) + 1)
    end
end

function algorithms.sliding_window_counter(key, period, limit, cost)
    -- the previous aligned window's count, weighted by how much of it still overlaps
    local window = math.floor(now / period)
    local elapsed = now - window * period
    local state = redis.call('HMGET', key, 'w', 'c', 'p')
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
            retry = math.max(period - elapsed - (limit - current - cost) * period / previous, 1)
        end
        return {0, math.max(math.floor(limit - estimate), 0), math.ceil(retry), period - elapsed}
    end
    return {1, math.max(math.floor(limit - estimate - cost), 0), 0, period - elapsed},
        function()
            redis.call('HSET', key, 'w', whole(window), 'c', current + cost, 'p', previous)
            redis.call('PEXPIRE', key, math.ceil(2 * period / 1000) + 1)
        end
end

local results, commits, admitted = {}, {}, true
for i, key in ipairs(KEYS) do
    local base = 2 + (i - 1) * 4
    local check = algorithms[ARGV[base + 1]]
    if check == nil then
        return redis.error_reply('unknown rate-limit algorithm')
    end
    local result, commit = check(key, tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]),
        tonumber(ARGV[base + 4]), ARGV[2] .. ':' .. i)
    results[i], commits[i] = result, commit
    if result[1] == 0 then
        admitted = false
    end
end
if admitted and ARGV[1] ~= '1' then
    for _, commit in ipairs(commits) do
        commit()
    end
end
local out = {}
for _, result in ipairs(results) do
    for j = 1, 4 do
        out[#out + 1] = result[j]
    end
end
return out
