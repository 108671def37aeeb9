-- End concurrency leases: remove the members ARGV[...] from the in-flight set KEYS[1].
-- Only the holder knows its members (a token unique to the call), so nobody else can
-- release its slots. Returns how many were still held.
return redis.call('ZREM', KEYS[1], unpack(ARGV))
