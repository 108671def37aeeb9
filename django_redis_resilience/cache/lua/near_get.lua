-- A near cache's read: the value of KEYS[1] and its time to live in milliseconds, in one
-- command (a near value must not outlive its key, and Redis reports an expiry only once it
-- notices it). One string, "<pttl>:<value>", or nil: a flat reply is parsed with fewer
-- calls than an array. Read-only.
local value = redis.call('GET', KEYS[1])
if not value then
    return false
end
return redis.call('PTTL', KEYS[1]) .. ':' .. value
