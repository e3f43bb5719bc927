"""The Lua scripts behind the Redis coordination (one round trip, atomic, each).

Redis runs a script without interleaving any other client's command, so a
check and its write cannot be split by another replica: that is what makes
"take the first free server" and "count this call unless over the limit"
exact across replicas. Time inside the scripts is Redis's own ``TIME``, so
replicas' clocks never have to agree. (Redis 7 replicates script effects, so
reading ``TIME`` before writing is allowed.)

Keys share the replica-independent prefix (``phonebridge:`` by default):

===========================  ===============================================
``lease:<server url>``       owner token of the call holding that server, PX = lease TTL
``rest:<server url>``        present while a server rests after a failed handshake
``armed``                    set once this Redis has seen a replica (no TTL)
``quarantine``               present for one lease TTL after ``armed`` was missing
``guard:rate:<caller hash>`` sorted set: call SID -> admission time (ms), the caller's window
``guard:global``             sorted set: call SID -> admission time, the last minute
``guard:active:<caller>``    sorted set: call SID -> expiry (ms), renewed while the call lives
``answered:<call sid>``      replica that answered the webhook, EX one day
``gate:<provider>``          present while the provider's Retry-After wait runs
``replicas``                 sorted set: replica id -> heartbeat expiry (ms)
===========================  ===============================================

**Quarantine.** A Redis that restarted lost every lease, while calls on the
surviving replicas still hold their servers. ``armed`` missing means exactly
that (or a brand-new Redis): the first script to notice sets ``quarantine``
for one TTL, during which no server is granted. Within that TTL every live
holder's tick (every TTL/3) finds its key gone and takes it back; only then
are free servers handed out again. Run this Redis without persistence, so a
restart always comes back empty and is noticed (docs/deployment.md).
"""

from __future__ import annotations

from typing import Final

_NOW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ARM: Final = """
local function arm(armed, quarantine, ttl)
  if redis.call('exists', armed) == 0 then
    redis.call('set', quarantine, '1', 'PX', ttl)
    redis.call('set', armed, '1')
  end
  return redis.call('exists', quarantine) == 1
end
"""

ACQUIRE: Final = (
    _ARM
    + """
-- KEYS: armed, quarantine, lease_1..lease_k, rest_1..rest_k
-- ARGV: owner token, ttl ms, k
-- -> index of the server now held (1-based), 0 if none is free, -1 in quarantine
local ttl = tonumber(ARGV[2])
local k = tonumber(ARGV[3])
if arm(KEYS[1], KEYS[2], ttl) then return -1 end
for i = 1, k do
  if redis.call('exists', KEYS[2 + k + i]) == 0
      and redis.call('set', KEYS[2 + i], ARGV[1], 'NX', 'PX', ttl) then
    return i
  end
end
return 0
"""
)

RELEASE: Final = """
-- compare-and-delete: only the holder's token frees the server
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

REST: Final = """
-- KEYS: rest (or gate) key; ARGV: ms. Extends the wait, never shortens it.
if redis.call('pttl', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('set', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""

TICK: Final = (
    _NOW
    + _ARM
    + """
-- The replica's periodic round trip: heartbeat, renew every lease and guard
-- slot it holds, and read the pool for readiness and metrics.
-- KEYS: replicas, armed, quarantine, n lease keys, m slot keys, k pool lease keys,
--       k pool rest keys
-- ARGV: replica id, ttl ms, n, m, k, n owner tokens, m call SIDs
-- -> {n renew results (1 renewed, 2 re-taken, 0 held by someone else),
--     free servers, quarantine ms left}
local ttl = tonumber(ARGV[2])
local n, m, k = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('zadd', KEYS[1], now + ttl, ARGV[1])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
arm(KEYS[2], KEYS[3], ttl)
local out = {}
for i = 1, n do
  local key, token = KEYS[3 + i], ARGV[5 + i]
  local v = redis.call('get', key)
  if v == token then
    redis.call('pexpire', key, ttl)
    out[i] = 1
  elseif not v then
    redis.call('set', key, token, 'PX', ttl)
    out[i] = 2
  else
    out[i] = 0
  end
end
for j = 1, m do
  local key = KEYS[3 + n + j]
  redis.call('zadd', key, now + ttl, ARGV[5 + n + j])
  redis.call('pexpire', key, ttl)
end
local free = 0
local base = 3 + n + m
for i = 1, k do
  if redis.call('exists', KEYS[base + i], KEYS[base + k + i]) == 0 then
    free = free + 1
  end
end
out[n + 1] = free
out[n + 2] = math.max(redis.call('pttl', KEYS[3]), 0)
return out
"""
)

GUARD_ADMIT: Final = (
    _NOW
    + """
-- KEYS: caller rate log, global log, caller active slots
-- ARGV: call sid, caller limit, caller window ms, global limit, concurrent limit, slot ttl ms
-- -> {0} admitted (reserved in all three), {1, active} concurrent,
--    {2, retry ms} caller rate, {3, retry ms} global rate
local sid = ARGV[1]
local rate_limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local global_limit, concurrent = tonumber(ARGV[4]), tonumber(ARGV[5])
local slot_ttl = tonumber(ARGV[6])
if concurrent > 0 then
  redis.call('zremrangebyscore', KEYS[3], '-inf', now)
  local active = redis.call('zcard', KEYS[3])
  if active >= concurrent then return {1, active} end
end
if rate_limit > 0 then
  redis.call('zremrangebyscore', KEYS[1], '-inf', now - window)
  if redis.call('zcard', KEYS[1]) >= rate_limit then
    local oldest = redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')
    return {2, tonumber(oldest[2]) + window - now}
  end
end
if global_limit > 0 then
  redis.call('zremrangebyscore', KEYS[2], '-inf', now - 60000)
  if redis.call('zcard', KEYS[2]) >= global_limit then
    local oldest = redis.call('zrange', KEYS[2], 0, 0, 'WITHSCORES')
    return {3, tonumber(oldest[2]) + 60000 - now}
  end
end
if rate_limit > 0 then
  redis.call('zadd', KEYS[1], now, sid)
  redis.call('pexpire', KEYS[1], window)
end
if global_limit > 0 then
  redis.call('zadd', KEYS[2], now, sid)
  redis.call('pexpire', KEYS[2], 60000)
end
if concurrent > 0 then
  redis.call('zadd', KEYS[3], now + slot_ttl, sid)
  redis.call('pexpire', KEYS[3], slot_ttl)
end
return {0}
"""
)

GUARD_CANCEL: Final = """
-- KEYS: caller rate log, global log, caller active slots; ARGV: call sid
for i = 1, 3 do redis.call('zrem', KEYS[i], ARGV[1]) end
return 1
"""

GATE_HOLD: Final = REST  # the same "extend, never shorten" on the gate key

ALIVE: Final = (
    _NOW
    + """
-- KEYS: replicas -> ids whose heartbeat has not expired
return redis.call('zrangebyscore', KEYS[1], now, '+inf')
"""
)
