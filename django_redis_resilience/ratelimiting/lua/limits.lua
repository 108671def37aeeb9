-- Check several limits at once, on Redis time, all or nothing: units are consumed only
-- if every limit admits the call. All KEYS must share a cluster slot (hash tags).
-- KEYS[i]: the state of limit i.
-- ARGV[1]: "1" to peek (consume nothing) or "0", followed by a token unique to this call
--   (empty when no limit keeps members);
-- ARGV[1 + i]: limit i as "<algorithm> <a> <b> <cost> <blocking 1|0>", where (a, b) is
--   gcra: (emission interval T in us, burst B): admits at most B + floor(elapsed / T);
--   fixed_window, sliding_window, sliding_window_counter: (period in us, limit);
--   concurrency: (lease in us, limit): at most `limit` units in flight, each slot a lease
--   that frees itself if its holder never releases it (released by release.lua).
-- One argument per limit, not five: each argument costs the client a conversion and a
-- protocol header per call, more than matching one string costs here.
-- Needs Redis 6.2+ (SET ... PXAT).
-- Returns one string of four integers per limit, space-separated: allowed, remaining,
-- retry_after_us, reset_after_us (one bulk reply parses much faster than an array).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function whole(x)
    return string.format('%.0f', x)
end

local peek, token = string.sub(ARGV[1], 1, 1) == '1', string.sub(ARGV[1], 2)

-- First pass: every limit's answer, and what admitting the call would write.
local out, writes, admitted = {}, {}, true
local algorithms, periods, costs = {}, {}, {}
for i = 1, #KEYS do
    local key = KEYS[i]
    local algorithm, a, b, cost, blocking =
        string.match(ARGV[i + 1], '^(%S+) (%d+) (%d+) (%d+) ([01])$')
    a, b, cost = tonumber(a), tonumber(b), tonumber(cost)
    algorithms[i], periods[i], costs[i] = algorithm, a, cost
    local ok, remaining, retry, reset, write
    if algorithm == 'gcra' then
        -- a = emission interval T (us), b = burst B
        local tolerance = a * b
        local tat = tonumber(redis.call('GET', key) or now)
        if tat < now then
            tat = now
        end
        local new_tat = tat + a * cost
        if new_tat - tolerance > now then
            ok, remaining, retry, reset = 0, math.max(math.floor((tolerance - (tat - now)) / a), 0),
                new_tat - tolerance - now, tat - now
        else
            ok, remaining, retry, reset = 1, math.floor((tolerance - (new_tat - now)) / a), 0,
                new_tat - now
            write = new_tat
        end
    elseif algorithm == 'fixed_window' then
        -- a = period (us), b = limit; the value is "<window number> <units used>"
        local window = math.floor(now / a)
        local ends = (window + 1) * a
        local state = redis.call('GET', key)
        local used = 0
        if state then
            local w, u = string.match(state, '(%d+) (%d+)')
            if tonumber(w) == window then
                used = tonumber(u)
            end
        end
        if used + cost > b then
            ok, remaining, retry, reset = 0, math.max(b - used, 0), ends - now, ends - now
        else
            ok, remaining, retry, reset = 1, b - used - cost, 0, ends - now
            write = {window, used + cost, ends}
        end
    elseif algorithm == 'sliding_window' then
        -- a = period (us), b = limit; one sorted-set member per admitted unit, scored by
        -- its time: never more than the limit's worth of members
        redis.call('ZREMRANGEBYSCORE', key, '-inf', whole(now - a))
        local used = redis.call('ZCARD', key)
        if used + cost > b then
            retry = a
            local index = used + cost - b - 1
            if index < used then
                -- the call fits once the oldest (used + cost - limit) units leave the window
                local oldest = redis.call('ZRANGE', key, index, index, 'WITHSCORES')
                retry = tonumber(oldest[2]) + a - now
            end
            local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
            reset = a
            if newest[2] then
                reset = tonumber(newest[2]) + a - now
            end
            ok, remaining = 0, math.max(b - used, 0)
        else
            ok, remaining, retry, reset = 1, b - used - cost, 0, a
            write = true
        end
    elseif algorithm == 'sliding_window_counter' then
        -- a = period (us), b = limit; the previous aligned window's count, weighted by
        -- how much of it still overlaps the sliding window
        local window = math.floor(now / a)
        local elapsed = now - window * a
        -- the value is "<window number> <units in it> <units in the one before>"
        local state = redis.call('GET', key)
        local current, previous = 0, 0
        if state then
            local w, c, p = string.match(state, '(%d+) (%d+) (%d+)')
            if tonumber(w) == window then
                current, previous = tonumber(c), tonumber(p)
            elseif tonumber(w) == window - 1 then
                previous = tonumber(c)
            end
        end
        local estimate = previous * (a - elapsed) / a + current
        if estimate + cost > b then
            if current + cost <= b then
                -- the previous window's weight falls until the estimate leaves room
                retry = math.max(a - elapsed - (b - current - cost) * a / previous, 1)
            else
                -- only in the next window, once this one's weight has fallen enough
                retry = a - elapsed + a * (current + cost - b) / current
            end
            -- whole again once every counted unit has slid out of the window
            reset = a - elapsed
            if current > 0 then
                reset = 2 * a - elapsed
            end
            ok, remaining, retry = 0, math.max(math.floor(b - estimate), 0), math.ceil(retry)
        else
            ok, remaining, retry, reset = 1, math.max(math.floor(b - estimate - cost), 0), 0,
                2 * a - elapsed
            write = {window, current + cost, previous}
        end
    elseif algorithm == 'concurrency' then
        -- a = lease (us), b = limit; one sorted-set member per unit in flight, scored by
        -- the time its lease ends
        redis.call('ZREMRANGEBYSCORE', key, '-inf', whole(now))
        local used = redis.call('ZCARD', key)
        if used + cost > b then
            local index = used + cost - b - 1
            local ending = redis.call('ZRANGE', key, index, index, 'WITHSCORES')
            ok, remaining, retry, reset = 0, math.max(b - used, 0), tonumber(ending[2]) - now, a
        else
            ok, remaining, retry, reset = 1, b - used - cost, 0, a
            write = true
        end
    else
        return redis.error_reply('unknown rate-limit algorithm')
    end
    if ok == 0 and blocking == '1' then
        admitted = false  -- a blocking limit refuses the call: nothing is consumed
    end
    writes[i] = write
    out[i] = string.format('%d %.0f %.0f %.0f', ok, remaining, retry, reset)
end

-- Second pass: consume only if no blocking limit refuses the call (and this is not a
-- peek); a non-blocking limit that is over consumes nothing itself.
if admitted and not peek then
    for i = 1, #KEYS do
        local key, algorithm, a, cost = KEYS[i], algorithms[i], periods[i], costs[i]
        local write = writes[i]
        if write == nil then
            -- over the limit (non-blocking): nothing to consume
        elseif algorithm == 'gcra' then
            redis.call('SET', key, whole(write), 'PX', math.ceil((write - now) / 1000) + 1)
        elseif algorithm == 'fixed_window' then
            redis.call('SET', key, whole(write[1]) .. ' ' .. whole(write[2]),
                'PXAT', whole(math.ceil(write[3] / 1000) + 1))
        elseif algorithm == 'sliding_window' then
            for unit = 1, cost do
                redis.call('ZADD', key, whole(now), token .. ':' .. i .. ':' .. unit)
            end
            redis.call('PEXPIRE', key, math.ceil(a / 1000) + 1)
        elseif algorithm == 'concurrency' then
            for unit = 1, cost do
                redis.call('ZADD', key, whole(now + a), token .. ':' .. i .. ':' .. unit)
            end
            redis.call('PEXPIRE', key, math.ceil(a / 1000) + 1)
        else
            redis.call('SET', key, whole(write[1]) .. ' ' .. whole(write[2]) .. ' ' .. whole(write[3]),
                'PX', math.ceil(2 * a / 1000) + 1)
        end
    end
end
return table.concat(out, ' ')
