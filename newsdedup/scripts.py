"""The Lua scripts newsdedup runs in Redis; every key they touch is in KEYS but band-table buckets.

``TRANSACT`` is a small compare-and-set interpreter: Python reads a snapshot,
decides (clustering policy, submissions, deletes) and sends the checks that
must still hold plus the writes to make; Redis runs the checks and the writes
atomically or nothing at all. Policy stays in testable Python, atomicity in Redis.

``INDEX`` inserts a batch into the LSH band table and returns, for each
article, the members that already shared a band value with it. Insert-and-read
in one atomic step means two copies processed at the same moment by two
workers can never miss each other: whichever is inserted second sees the first.

The band table is a linear hash table (Litwin) over Redis strings, described in
:mod:`newsdedup.keys`. Its bucket keys follow from the table's state, which only
a script can read atomically, so the scripts that touch it (``INDEX``,
``LOOKUP``, ``TRANSACT``'s ``unband``, ``MIGRATE_BUCKETS``) name bucket keys
themselves from a prefix they are given: those keys are not in KEYS. (Scripts
here already span many hash slots; newsdedup does not support Redis Cluster.)
"""

from __future__ import annotations

# The band table, shared by the scripts below. A bucket is a string of 8-byte entries:
# 4-byte band value (little-endian), 4-byte article number. State (hash): level, next,
# entries. A band value v lives in bucket v mod 2^level, or v mod 2^(level+1) when that is
# below next (already split). Buckets split one at a time, in order, whenever the average
# exceeds `load` entries, so every bucket stays small however large the index grows and a
# lookup costs the same at 10k articles as at 10M.
BAND_TABLE = r"""
local function bt_state(skey, initial)
  local st = redis.call("HMGET", skey, "level", "next", "entries")
  return tonumber(st[1] or initial), tonumber(st[2] or "0"), tonumber(st[3] or "0")
end
local function bt_addr(v, level, nxt)
  local m = 2 ^ level
  local a = v % m
  if a < nxt then a = v % (2 * m) end
  return a
end
local function bt_key(prefix, band, a) return prefix .. band .. ":" .. a end
-- band values (4 bytes each) as numbers and as strings, in two C calls, not two per band, and
-- how many (struct.unpack also returns the next position: the tables hold one more value)
local function bt_values(fields)
  local nb = #fields / 4
  return {struct.unpack("<" .. string.rep("I4", nb), fields)}, {struct.unpack(string.rep("c4", nb), fields)}, nb
end
-- the first hit of p in bucket string s at or after `from` that starts an entry (searched in C;
-- a hit that straddles two 8-byte entries does not count)
local function bt_aligned(s, p, from)
  local at = string.find(s, p, from, true)
  while at and (at - 1) % 8 ~= 0 do at = string.find(s, p, at + 1, true) end
  return at
end
-- members of the entries of bucket string s whose band value is f, how many, and whether n4 is
-- one of them
local function bt_find(s, f, n4)
  local at = string.find(s, f, 1, true)  -- most values are in no entry: one C call, nothing more
  if not at then return "", 0, false end
  if (at - 1) % 8 ~= 0 then at = bt_aligned(s, f, at + 1) end
  if not at then return "", 0, false end
  local found, mine = {}, false
  while at do
    local m = string.sub(s, at + 4, at + 7)
    if m == n4 then mine = true end
    found[#found + 1] = m
    at = bt_aligned(s, f, at + 8)
  end
  return table.concat(found), #found, mine
end
-- split buckets (in every band) while the average holds more than `load` entries, for `added`
-- new entries: at most twice the steps they need plus 8, so no call blocks Redis for long and a
-- table that is behind (just migrated) catches up over later calls
local function bt_grow(prefix, nbands, level, nxt, entries, load, added)
  local steps, most = 0, 8 + math.ceil(2 * added / (load * nbands))
  while steps < most and level < 31 and entries > load * nbands * (2 ^ level + nxt) do
    steps = steps + 1
    local m = 2 ^ level
    local byte_i, bitv = math.floor(level / 8), 2 ^ (level % 8)
    for b = 0, nbands - 1 do
      local key = bt_key(prefix, b, nxt)
      local s = redis.call("GET", key)
      if s then
        local lo, hi = {}, {}
        for e = 1, #s, 8 do
          if math.floor(string.byte(s, e + byte_i) / bitv) % 2 == 1 then
            hi[#hi + 1] = string.sub(s, e, e + 7)
          else
            lo[#lo + 1] = string.sub(s, e, e + 7)
          end
        end
        if #hi > 0 then
          redis.call("SET", bt_key(prefix, b, nxt + m), table.concat(hi))
          if #lo > 0 then redis.call("SET", key, table.concat(lo)) else redis.call("DEL", key) end
        end
      end
    end
    nxt = nxt + 1
    if nxt == m then level = level + 1; nxt = 0 end
  end
  return level, nxt
end
"""

# ARGV is a flat list of instructions: name, argument count, arguments...
# Checks ("eqm", "exists") run first; if one fails nothing is written and the
# script returns {0, index-of-failed-check}. Otherwise every write runs and {1} is returned.
TRANSACT = BAND_TABLE + r"""
local argv = ARGV
local instrs = {}
local i = 1
while i <= #argv do
  local name = argv[i]
  local n = tonumber(argv[i + 1])
  local args = {}
  for j = 1, n do args[j] = argv[i + 1 + j] end
  instrs[#instrs + 1] = {name, args}
  i = i + 2 + n
end
local function key(s) return KEYS[tonumber(s)] end
for idx, ins in ipairs(instrs) do
  local name, a = ins[1], ins[2]
  if name == "eqm" then  -- fields of one hash ("" = absent): one HMGET
    local nf = (#a - 1) / 2
    local fields = {}
    for f = 1, nf do fields[f] = a[2 * f] end
    local got = redis.call("HMGET", key(a[1]), unpack(fields))
    for f = 1, nf do
      local want = a[2 * f + 1]
      if want == "" then
        if got[f] then return {0, idx} end
      elseif got[f] ~= want then return {0, idx} end
    end
  elseif name == "exists" then
    if redis.call("EXISTS", key(a[1])) ~= tonumber(a[2]) then return {0, idx} end
  end
end
for _, ins in ipairs(instrs) do
  local name, a = ins[1], ins[2]
  if name == "hset" then
    redis.call("HSET", key(a[1]), unpack(a, 2))
  elseif name == "hdel" then
    redis.call("HDEL", key(a[1]), unpack(a, 2))
  elseif name == "hincrby" then
    redis.call("HINCRBY", key(a[1]), a[2], a[3])
  elseif name == "hincrn" then  -- field, delta pairs
    local k = key(a[1])
    for j = 2, #a, 2 do redis.call("HINCRBY", k, a[j], a[j + 1]) end
  elseif name == "sadd" then
    redis.call("SADD", key(a[1]), unpack(a, 2))
  elseif name == "srem" then
    redis.call("SREM", key(a[1]), unpack(a, 2))
  elseif name == "set" then
    redis.call("SET", key(a[1]), a[2])
  elseif name == "del" then
    local ks = {}
    for j = 1, #a do ks[j] = key(a[j]) end
    redis.call("DEL", unpack(ks))
  elseif name == "zadd" then  -- score, members...
    local args = {}
    for j = 3, #a do args[#args + 1] = a[2]; args[#args + 1] = a[j] end
    redis.call("ZADD", key(a[1]), unpack(args))
  elseif name == "zrem" then
    redis.call("ZREM", key(a[1]), unpack(a, 2))
  elseif name == "xack" then  -- group, ids...
    -- a finished entry is deleted too: the stream holds only work not yet done
    redis.call("XACK", key(a[1]), a[2], unpack(a, 3))
    redis.call("XDEL", key(a[1]), unpack(a, 3))
  elseif name == "xadd" then
    redis.call("XADD", key(a[1]), "*", unpack(a, 2))
  elseif name == "xaddcap" then  -- maxlen, fields...: approximate trimming (whole nodes)
    redis.call("XADD", key(a[1]), "MAXLEN", "~", a[2], "*", unpack(a, 3))
  elseif name == "unband" then  -- state key, bucket prefix, initial level, band, band value, n4
    local skey = key(a[1])
    local level, nxt = bt_state(skey, a[3])
    local bkey = bt_key(a[2], a[4], bt_addr(struct.unpack("<I4", a[5]), level, nxt))
    local s = redis.call("GET", bkey)
    local at = s and bt_aligned(s, a[5] .. a[6], 1)
    if at then
      s = string.sub(s, 1, at - 1) .. string.sub(s, at + 8)
      if #s == 0 then redis.call("DEL", bkey) else redis.call("SET", bkey, s) end
      redis.call("HINCRBY", skey, "entries", -1)
    end
  end
end
return {1}
"""

# KEYS: band-table state, article keys...
# ARGV: max_members, bucket prefix, initial level, load, bands, then per article:
#   akey_index, n4 (4-byte member), ver, band values (4 bytes per band; empty: not indexed),
#   nfields, (field, value) x nfields
# Returns, per article, the concatenated 4-byte members that share a band value with it
# (repeats included: the client removes them), or false when the article's version moved
# on (superseded; nothing written).
INDEX = BAND_TABLE + r"""
local maxm = tonumber(ARGV[1])
local prefix, load, nbands = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])
local level, nxt, entries = bt_state(KEYS[1], ARGV[3])
local bp = {}
for b = 1, nbands do bp[b] = bt_key(prefix, b - 1, "") end  -- + address: the hot path's keys
local added = 0
local out = {}
local i = 6
while i <= #ARGV do
  local akey = KEYS[tonumber(ARGV[i])]
  local n4 = ARGV[i + 1]
  local ver = ARGV[i + 2]
  local fields = ARGV[i + 3]
  local nf = tonumber(ARGV[i + 4])
  local fstart = i + 4
  if redis.call("HGET", akey, "ver") ~= ver then
    out[#out + 1] = false
  else
    local found = {}
    local vs, fs, nb = bt_values(fields)
    for b = 1, nb do
      local bkey = bp[b] .. bt_addr(vs[b], level, nxt)
      local s = redis.call("GET", bkey)
      if not s then
        redis.call("SET", bkey, fs[b] .. n4)
        added = added + 1
      else
        local members, count, mine = bt_find(s, fs[b], n4)
        if count > 0 then found[#found + 1] = members end
        -- mine: already inserted by an earlier attempt at this batch
        if not mine and count < maxm then
          redis.call("APPEND", bkey, fs[b] .. n4)
          added = added + 1
        end
      end
    end
    if nf > 0 then redis.call("HSET", akey, unpack(ARGV, fstart + 1, fstart + 2 * nf)) end
    out[#out + 1] = table.concat(found)
  end
  i = fstart + 1 + 2 * nf
end
if added > 0 then
  entries = entries + added
  level, nxt = bt_grow(prefix, nbands, level, nxt, entries, load, added)
  redis.call("HSET", KEYS[1], "level", level, "next", nxt, "entries", entries)
end
return out
"""

# KEYS: band-table state.  ARGV: bucket prefix, initial level, band values (4 bytes per band).
# Returns the concatenated 4-byte members sharing a band value (read-only: POST /v1/check).
LOOKUP = BAND_TABLE + r"""
local level, nxt = bt_state(KEYS[1], ARGV[2])
local vs, fs, nb = bt_values(ARGV[3])
local out = {}
for b = 1, nb do
  local s = redis.call("GET", bt_key(ARGV[1], b - 1, bt_addr(vs[b], level, nxt)))
  if s then out[#out + 1] = bt_find(s, fs[b], "") end
end
return table.concat(out)
"""

# KEYS: band-table state, legacy bucket hashes (nd:lsh:{band}:{bucket}; field = band value,
# value = packed members).  ARGV: bucket prefix, initial level, load, bands, then the band of each
# legacy key.  Moves their entries into the band table and deletes them; returns entries moved.
MIGRATE_BUCKETS = BAND_TABLE + r"""
local prefix, load, nbands = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local level, nxt, entries = bt_state(KEYS[1], ARGV[2])
local moved = 0
for k = 2, #KEYS do
  if redis.call("TYPE", KEYS[k]).ok == "hash" then
    local band = ARGV[k + 3]
    local kv = redis.call("HGETALL", KEYS[k])
    for j = 1, #kv, 2 do
      local f, members = kv[j], kv[j + 1]
      if #f == 4 then
        local parts = {}
        for p = 1, #members - 3, 4 do parts[#parts + 1] = f .. string.sub(members, p, p + 3) end
        if #parts > 0 then
          local bkey = bt_key(prefix, band, bt_addr(struct.unpack("<I4", f), level, nxt))
          redis.call("APPEND", bkey, table.concat(parts))
          moved = moved + #parts
        end
      end
    end
    redis.call("DEL", KEYS[k])
  end
end
entries = entries + moved
level, nxt = bt_grow(prefix, nbands, level, nxt, entries, load, moved)
redis.call("HSET", KEYS[1], "level", level, "next", nxt, "entries", entries)
return moved
"""

# Batch reads. A pipeline costs the client a command to pack and a reply to parse per key;
# these return one flat array instead (nested arrays are slow to parse in redis-py too).
# Measured on 417 article hashes: pipeline 2.4 ms, flat script 0.5 ms.

# KEYS: hashes.  ARGV: fields.  Returns #KEYS x #ARGV values (false when missing).
HMGET_FLAT = r"""
local out = {}
local nf = #ARGV
for i = 1, #KEYS do
  local v = redis.call("HMGET", KEYS[i], unpack(ARGV))
  for f = 1, nf do out[#out + 1] = v[f] or false end
end
return out
"""

# KEYS: article hash, payload string, ... (pairs).  ARGV: fields.
# Returns per pair the fields, then the payload (false when missing).
LOAD = r"""
local out = {}
local nf = #ARGV
for i = 1, #KEYS, 2 do
  local v = redis.call("HMGET", KEYS[i], unpack(ARGV))
  for f = 1, nf do out[#out + 1] = v[f] or false end
  out[#out + 1] = redis.call("GET", KEYS[i + 1]) or false
end
return out
"""

# KEYS: cluster hash, member set, ... (pairs).  Returns per pair the version (false for an
# implicit singleton, which has no keys) and the members joined by ",".
CLUSTER_STATE = r"""
local out = {}
for i = 1, #KEYS, 2 do
  local v = redis.call("HGET", KEYS[i], "v")
  out[#out + 1] = v or false
  out[#out + 1] = v and table.concat(redis.call("SMEMBERS", KEYS[i + 1]), ",") or ""
end
return out
"""

# KEYS: boilerplate hash keys (one per article, repeated as needed)
# ARGV: per article: key_index, nshapes, shapes...
# Returns, flat, per article: docs, count1, count2, ...: how many stories of the source were seen
# and how many of them had each line shape (counts are written by the clustering transaction).
BOILERPLATE = r"""
local out = {}
local i = 1
while i <= #ARGV do
  local k = KEYS[tonumber(ARGV[i])]
  local ns = tonumber(ARGV[i + 1])
  out[#out + 1] = tonumber(redis.call("HGET", k, "#docs") or "0")
  for c = 1, ns, 1000 do  -- in chunks: Lua's unpack fails near 8000 values
    local shapes = {}
    for j = c, math.min(ns, c + 999) do shapes[#shapes + 1] = ARGV[i + 1 + j] end
    local vals = redis.call("HMGET", k, unpack(shapes))
    for j = 1, #vals do out[#out + 1] = tonumber(vals[j] or "0") end
  end
  i = i + 2 + ns
end
return out
"""

# KEYS[1]: one source's boilerplate hash.  ARGV: max_fields
# Line shapes seen in a single story are forgotten once the hash grows past max_fields:
# chrome is seen again and again and keeps its count, a story's own lines never come back.
PRUNE_BOILERPLATE = r"""
if redis.call("HLEN", KEYS[1]) <= tonumber(ARGV[1]) then return 0 end
local removed = 0
local cursor = "0"
repeat
  local res = redis.call("HSCAN", KEYS[1], cursor, "COUNT", 1000)
  cursor = res[1]
  local kv = res[2]
  for j = 1, #kv, 2 do
    if kv[j + 1] == "1" and kv[j] ~= "#docs" then
      redis.call("HDEL", KEYS[1], kv[j])
      removed = removed + 1
    end
  end
until cursor == "0"
return removed
"""
