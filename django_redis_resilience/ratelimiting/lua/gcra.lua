-- GCRA (generic cell rate algorithm) on Redis time, so every process agrees on "now".
-- KEYS[1]: the theoretical arrival time (TAT), in microseconds.
-- ARGV[1]: emission interval T (us); ARGV[2]: burst B; ARGV[3]: cost; ARGV[4]: "1" to peek.
-- Any request stream is admitted at most B + floor(elapsed / T) times.
-- Returns {allowed, remaining, retry_after_us, reset_after_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
    tat = now
end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
if allow_at > now then
    local remaining = math.max(math.floor((tolerance - (tat - now)) / interval), 0)
    return {0, remaining, allow_at - now, tat - now}
end
if ARGV[4] ~= '1' then
    redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
        'PX', math.ceil((new_tat - now) / 1000) + 1)
end
return {1, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now}
