-- Add ARGV[1] to the integer at KEYS[1] only if the key exists (Django's incr
-- raises ValueError for a missing key); atomic, one round trip, TTL kept.
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
