"""The Lua scripts of the Redis store. Every key a script touches is in KEYS.

Each script is one atomic step of an event's life; scripts are atomic but
never rolled back, so each orders its writes (or, ADMIT, undoes its mark) so
that a failure midway leaves a duplicate at worst, never a loss.
"""

# ARGV: ttl_ms, n, k, then k kinds, each: source, type, n_targets, and that many
# 1-based offsets into the stream keys that follow the n marker keys in KEYS; then
# per event: its marker value "<token>|<digest of the body>", its kind (1-based),
# key, body. Returns per event 1 accepted, 0 duplicate, 2 duplicate with another body.
#
# Kinds, not each event's source, type and targets: the events of one call mostly
# share them, and Redis' cost grows with the arguments (each a string it parses,
# copies into Lua and frees). Four per event where there were eight (the marker
# value joined by the packer, not the script): Redis' time per event went from a
# median 1.26x bare_admit's script to 1.07x at 12 events a call, 1.20x to 1.10x at 24
# (`python -m benchmarks.lua_admit --batch 12|24`, 6 rounds each).
#
# Enqueue or unmark: the marker is set first (SET NX GET: one call that both
# tests and sets it), and a failed XADD deletes it again before the error is
# returned, so no failure leaves a marker without its event (a loss); the worst
# left behind is an event enqueued for one target but not the next (a possible
# duplicate when the provider retries). One SET NX GET where GET then SET were
# two calls: the script's Redis time per event went from 1.21-1.29x bare_admit's
# script to 0.93-1.16x, and 1.06-1.25x with the checks made before the mark
# (`python -m benchmarks.lua_admit`, 3 and 7 rounds).
# A marker holding this request's own value means
# the link re-sent the call after a lost reply: that event is ours and already
# queued, so "accepted". The `#!lua` shebang makes Redis refuse the whole
# script up front when over maxmemory, instead of failing between two writes.
ADMIT = """#!lua
local ttl = ARGV[1]
local n = tonumber(ARGV[2])
local kinds = {}
local a = 4
-- Every kind is checked before the first mark: a Lua error after a SET would
-- leave that marker without its event.
for k = 1, tonumber(ARGV[3]) do
  local nt = tonumber(ARGV[a + 2])
  if not nt then return redis.error_reply('ERR admit: bad target count') end
  local streams = {}
  for j = 1, nt do
    local o = tonumber(ARGV[a + 2 + j])
    if not o or o < 1 or not KEYS[n + o] then
      return redis.error_reply('ERR admit: bad stream offset')
    end
    streams[j] = KEYS[n + o]
  end
  kinds[k] = {ARGV[a], ARGV[a + 1], streams}
  a = a + 3 + nt
end
local kind_of = {}
for i = 1, n do
  kind_of[i] = kinds[tonumber(ARGV[a + 4 * i - 3])]
  if not kind_of[i] then return redis.error_reply('ERR admit: bad kind') end
end
local function digest_kind(digest)
  local tag = string.sub(digest, 1, 1)
  if string.find(tag, '^%x') then return '' end
  return tag
end
local out = {}
for i = 1, n do
  local mine = ARGV[a]
  local held = redis.call('SET', KEYS[i], mine, 'NX', 'GET', 'PX', ttl)
  if not held then
    local source, etype, streams = kind_of[i][1], kind_of[i][2], kind_of[i][3]
    for j = 1, #streams do
      local added = redis.pcall('XADD', streams[j], '*',
        'source', source, 'type', etype, 'key', ARGV[a + 2], 'body', ARGV[a + 3])
      if type(added) == 'table' and added.err then
        redis.call('DEL', KEYS[i])
        return added
      end
    end
    out[i] = 1
  elseif held == mine then
    out[i] = 1
  else
    -- models.conflicting: digests of two kinds (their tags, "" for a hex digit) are
    -- not compared.
    local was, now = string.match(held, '[^|]*$'), string.match(mine, '[^|]*$')
    out[i] = (was ~= now and digest_kind(was) == digest_kind(now)) and 2 or 0
  end
  a = a + 4
end
return out
"""

# KEYS: stream. ARGV: group, id... Delivered entries leave the stream at once,
# so the stream only ever holds undelivered events: nothing is trimmed, and
# its length is the queue depth. allow-oom: it only deletes, and it is what frees
# memory when a backlog filled Redis (noeviction); refused, every delivered event
# would stay pending, be delivered again, and the queue would never drain.
ACK = """#!lua flags=allow-oom
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
"""

# Shared by RETRY and DEAD_LETTER: an entry's fields without the bookkeeping
# ones, plus `since` (when it was first queued: the ms part of its first id).
_FIELDS = """
local function event_fields(id, fields, drop)
  local out = {}
  local since = string.match(id, '^(%d+)')
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name == 'since' then since = fields[i + 1]
    elseif not drop[name] then
      out[#out + 1] = name
      out[#out + 1] = fields[i + 1]
    end
  end
  out[#out + 1] = 'since'
  out[#out + 1] = since
  return out
end
"""

# KEYS: stream, retry zset, retry hash. ARGV: group, id, due_ms, attempts.
# The event waits in the hash (by its old id) until due, then PROMOTE puts it
# back on the stream. Copy first, then ack: a failure leaves a duplicate.
RETRY = (
    "#!lua\n"
    + _FIELDS
    + """
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #found == 1 then
  local out = event_fields(ARGV[2], found[1][2], {attempts = true})
  out[#out + 1] = 'attempts'
  out[#out + 1] = ARGV[4]
  redis.call('HSET', KEYS[3], ARGV[2], cmsgpack.pack(out))
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return #found
"""
)

# KEYS: stream, dead-letter stream. ARGV: group, id, attempts, status, error, failed_ms.
DEAD_LETTER = (
    "#!lua\n"
    + _FIELDS
    + """
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #found == 1 then
  local drop = {attempts = true, status = true, error = true, failed_at = true, queued_id = true}
  local out = event_fields(ARGV[2], found[1][2], drop)
  local extra = {'attempts', ARGV[3], 'status', ARGV[4], 'error', ARGV[5],
                 'failed_at', ARGV[6], 'queued_id', ARGV[2]}
  for i = 1, #extra do out[#out + 1] = extra[i] end
  redis.call('XADD', KEYS[2], '*', unpack(out))
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return #found
"""
)

# KEYS: stream, retry zset, retry hash. ARGV: now_ms, limit.
# Returns {moved, next due ms or -1}.
PROMOTE = """#!lua
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local packed = redis.call('HGET', KEYS[3], id)
  if packed then
    redis.call('XADD', KEYS[1], '*', unpack(cmsgpack.unpack(packed)))
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[2], id)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, -1} end
return {#due, tonumber(nxt[2])}
"""

# KEYS: dead-letter stream, stream. ARGV: dead-letter id.
# Puts one dead letter back on the target's stream with a fresh attempt count
# (source, type, key, body and since kept; the failure bookkeeping dropped),
# then deletes it from the dead-letter stream. Add before delete: a failure
# midway leaves a duplicate at worst. An entry lacking an event field is left
# alone: on the stream it would stop the forwarder that claims it.
# Returns {'replayed', new id}, {'gone'} or {'malformed', missing field}.
REPLAY_DEAD = """#!lua
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return {'gone'} end
local have = {}
local fields = found[1][2]
for i = 1, #fields, 2 do have[fields[i]] = fields[i + 1] end
local out = {}
for _, name in ipairs({'source', 'type', 'key', 'body', 'since'}) do
  if have[name] then
    out[#out + 1] = name
    out[#out + 1] = have[name]
  elseif name ~= 'since' then
    return {'malformed', name}
  end
end
local id = redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('XDEL', KEYS[1], ARGV[1])
return {'replayed', id}
"""
