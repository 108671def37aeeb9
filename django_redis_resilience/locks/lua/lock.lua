-- One lock: its holder, its fencing counter and its queue of waiters.
--
-- KEYS[1] lock      "<waiter id>:<fence>" of the holder, with the lease as its TTL
-- KEYS[2] counter   the last fence or ticket issued (never below the server's clock)
-- KEYS[3] queue     ZSET: waiter id -> ticket (arrival order)
-- KEYS[4] waiters   HASH: waiter id -> "<entry expiry ms> <lease ms>"
-- Every key shares the lock's hash tag, so they live in one cluster slot; a
-- waiter's wake-up list is KEYS[1] .. ":wake:" .. its id, in that slot too.
--
-- ARGV[1] the request: six fields, each ended by a newline (one argument, not six: the
--         client converts and frames every argument of every call)
--   1 operation: acquire | release | extend | leave
--   2 waiter id (acquire, leave) or the holder's token "<id>:<fence>" (release, extend)
--   3 lease ms (acquire), ms (extend), 1 to hand on a lock given meanwhile (leave)
--   4 queue entry lease ms (acquire: 0 = try once, do not queue); "add", "set" or
--     "renew" (extend: "renew" sets the lease unless more is left already)
--   5 how long the counter outlives its last use, ms
--   6 hand-off lease cap ms: a woken waiter holds the lock this long until it extends
-- ARGV[2] acquire: the caller's deadline, microseconds on this server's clock (0 = none).
--         A caller stops reading the reply at its socket timeout; a script that a hung
--         or slow server runs after that (it was waiting in the server's buffers) would
--         grant or queue an owner nobody holds. Past the deadline it leaves instead.
--
-- Replies: acquire {1, fence, pttl, now} when the caller holds the lock, {0, pttl of
-- the holder, now} otherwise, {-1, now} when it ran past the deadline (now: this
-- server's clock in microseconds, for the caller's next deadline); leave {1, fence,
-- pttl} or {0, pttl of the holder}; release {1, handed on 0|1} or {0}; extend 1 or 0.
--
-- TIME before writes needs script effects replication: the default since Redis 5
-- (and the only mode since 7), so no redis.replicate_commands() here.

local lock, counter, queue, waiters = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local argv = {}
for field in string.gmatch(ARGV[1], '([^\n]*)\n') do
  argv[#argv + 1] = field
end
local op, who = argv[1], argv[2]
local keep_ms = tonumber(argv[5])
local handoff_ms = tonumber(argv[6])

local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local now_ms = math.floor(now_us / 1000)

-- Strictly increasing, and never below the clock in microseconds: a replica
-- promoted without the last writes still issues larger numbers than the old
-- primary did (as long as the clocks agree better than a failover is quick).
local function next_number()
  local n = now_us
  local last = tonumber(redis.call('GET', counter) or '0')
  if n <= last then n = last + 1 end
  redis.call('SET', counter, string.format('%.0f', n), 'PX', keep_ms)
  return n
end

local function grant(id, lease_ms)
  local fence = string.format('%.0f', next_number())
  redis.call('SET', lock, id .. ':' .. fence, 'PX', lease_ms)
  return fence
end

local function forget(id)
  redis.call('ZREM', queue, id)
  redis.call('HDEL', waiters, id)
end

-- The first waiter whose entry has not expired; expired ones are dropped.
local function live_head()
  while true do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then return nil end
    local entry = redis.call('HGET', waiters, head)
    if entry then
      local expiry, lease = string.match(entry, '^(%d+) (%d+)$')
      if tonumber(expiry) > now_ms then return head, tonumber(lease) end
    end
    forget(head)
  end
end

-- The lock is free: give it to the first live waiter and wake it up.
local function hand_on()
  local head, lease = live_head()
  if not head then return 0 end
  forget(head)
  local fence = grant(head, math.min(lease, handoff_ms))
  local wake = lock .. ':wake:' .. head
  redis.call('DEL', wake)
  redis.call('RPUSH', wake, fence)
  redis.call('PEXPIRE', wake, handoff_ms)
  return 1
end

local function held_by(id)
  local holder = redis.call('GET', lock)
  local mine = id .. ':'
  if holder and string.sub(holder, 1, #mine) == mine then
    return string.sub(holder, #mine + 1)
  end
  return nil
end

-- The waiter is gone: drop its entry and wake-up list; the fence if it was handed the lock.
local function drop(id)
  forget(id)
  redis.call('DEL', lock .. ':wake:' .. id)
  return held_by(id)
end

local function pass_on()
  redis.call('DEL', lock)
  hand_on()
end

if op == 'acquire' then
  local lease_ms, entry_ms = tonumber(argv[3]), tonumber(argv[4])
  local deadline = tonumber(ARGV[2] or '0')
  if deadline > 0 and now_us > deadline then  -- nobody reads the reply: leave
    if drop(who) then pass_on() end
    return {-1, now_us}
  end
  local fence = held_by(who)
  if fence then  -- handed on while the caller was not listening
    forget(who)
    redis.call('DEL', lock .. ':wake:' .. who)
    return {1, fence, redis.call('PTTL', lock), now_us}
  end
  if redis.call('EXISTS', lock) == 0 then
    local head = live_head()
    if not head or head == who then
      forget(who)
      return {1, grant(who, lease_ms), lease_ms, now_us}
    end
    -- The first waiter missed its wake-up (the holder's lease ran out): it goes first.
    hand_on()
  end
  if entry_ms > 0 then
    if not redis.call('ZSCORE', queue, who) then
      redis.call('ZADD', queue, string.format('%.0f', next_number()), who)
    end
    redis.call('HSET', waiters, who, string.format('%.0f %d', now_ms + entry_ms, lease_ms))
    -- Live waiters refresh their entries well within this; dead ones leave nothing behind.
    redis.call('PEXPIRE', queue, 2 * entry_ms)
    redis.call('PEXPIRE', waiters, 2 * entry_ms)
  end
  return {0, redis.call('PTTL', lock), now_us}
end

if op == 'release' then
  if redis.call('GET', lock) ~= who then return {0} end
  redis.call('DEL', lock)
  return {1, hand_on()}
end

if op == 'extend' then
  if redis.call('GET', lock) ~= who then return 0 end
  local ms = tonumber(argv[3])
  local ttl = redis.call('PTTL', lock)
  if argv[4] == 'add' then
    if ttl > 0 then ms = ms + ttl end
  elseif argv[4] == 'renew' and ttl > ms then
    return 1  -- extended beyond the lease by hand: renewal never shortens it
  end
  redis.call('PEXPIRE', lock, ms)
  return 1
end

if op == 'leave' then
  local fence = drop(who)
  if fence then
    if argv[3] == '1' then  -- cancelled: pass the lock on at once
      pass_on()
      return {0, 0}
    end
    return {1, fence, redis.call('PTTL', lock)}
  end
  return {0, redis.call('PTTL', lock)}
end

return redis.error_reply('unknown lock operation')
