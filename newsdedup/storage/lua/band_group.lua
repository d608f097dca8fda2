-- One band group's table (docs/cluster.md 4.1): insert-and-read, lookup or removal of entries,
-- every bucket named in KEYS (this script never builds a key name).
-- KEYS: the group's state, then bucket keys (deduplicated by the client).
-- ARGV: mode ("i" insert and read, "m" insert only, "l" lookup, "u" remove), max members per
--   band value, initial level, load, bands in the group, the bucket keys' addresses (per key
--   after the state: 1 byte band position in the group, 4 bytes bucket address, "<BI4"), then
--   per article: n4 (4-byte member), band values (4 bytes each), the key index of each value's
--   bucket as the client addressed it (2 bytes each, "<I2").
-- Each address is recomputed from the current state. A value whose bucket is not declared (the
-- table split since the client read its state) is deferred: returned, not touched.
-- Returns {found per article (concatenated 4-byte members sharing a value, repeats included),
--   deferred per article (band positions, 1 byte each), level, next, entries, removed}.
-- Runs after band_table.lua (the loader puts that library in front of it).
local mode, maxm = ARGV[1], tonumber(ARGV[2])
local load, nbands = tonumber(ARGV[4]), tonumber(ARGV[5])
local level, nxt, entries = bt_state(KEYS[1], ARGV[3])
local desc = ARGV[6]
local kpos, where = {}, {}  -- KEYS index -> band position; band position -> address -> KEYS index
if #KEYS > 1 then
  local d = {struct.unpack("<" .. string.rep("BI4", #KEYS - 1), desc)}
  for k = 2, #KEYS do
    local p, a = d[2 * k - 3], d[2 * k - 2]
    kpos[k] = p
    local w = where[p]
    if not w then w = {}; where[p] = w end
    w[a] = k
  end
end
local added, removed = 0, 0
local found_out, deferred_out = {}, {}
local cuts, order = {}, {}  -- removal: KEYS index -> entries to remove (one rewrite per bucket)
local a = 7
while a <= #ARGV do
  local n4 = ARGV[a]
  local vs, fs, nb = bt_values(ARGV[a + 1])
  local ks = {struct.unpack("<" .. string.rep("I2", nb), ARGV[a + 2])}
  local found, deferred = {}, {}
  for b = 1, nb do
    local k = ks[b]
    local p = kpos[k]
    local addr = bt_addr(vs[b], level, nxt)
    k = where[p][addr]  -- the client's key when its address is still right
    if not k then
      deferred[#deferred + 1] = string.char(p)
    elseif mode == "u" then
      local w = cuts[k]
      if not w then w = {}; cuts[k] = w; order[#order + 1] = k end
      w[#w + 1] = fs[b] .. n4
    else
      local s = redis.call("GET", KEYS[k])
      if not s then
        if mode ~= "l" then
          redis.call("SET", KEYS[k], fs[b] .. n4)
          added = added + 1
        end
      else
        local members, count, mine = bt_find(s, fs[b], n4)
        if count > 0 and mode ~= "m" then found[#found + 1] = members end
        -- mine: already inserted by an earlier attempt (or a deferred call) for this article
        if mode ~= "l" and not mine and count < maxm then
          redis.call("APPEND", KEYS[k], fs[b] .. n4)
          added = added + 1
        end
      end
    end
  end
  found_out[#found_out + 1] = table.concat(found)
  deferred_out[#deferred_out + 1] = table.concat(deferred)
  a = a + 3
end
for _, k in ipairs(order) do
  local s = redis.call("GET", KEYS[k])
  if s then
    local ats = {}
    for _, e in ipairs(cuts[k]) do
      local at = bt_aligned(s, e, 1)
      if at then ats[#ats + 1] = at end
    end
    if #ats > 0 then
      table.sort(ats)
      local parts, from, last = {}, 1, -8
      for _, at in ipairs(ats) do
        if at ~= last then  -- the same entry asked for twice is removed once
          parts[#parts + 1] = string.sub(s, from, at - 1)
          from, last = at + 8, at
          removed = removed + 1
        end
      end
      parts[#parts + 1] = string.sub(s, from)
      local rest = table.concat(parts)
      if #rest == 0 then redis.call("DEL", KEYS[k]) else redis.call("SET", KEYS[k], rest) end
    end
  end
end
if added > 0 then
  entries = entries + added
  level, nxt = bt_grow(where, nbands, level, nxt, entries, load, added)
  redis.call("HSET", KEYS[1], "level", level, "next", nxt, "entries", entries)
elseif removed > 0 then
  entries = entries - removed
  redis.call("HSET", KEYS[1], "entries", entries)
end
return {found_out, deferred_out, level, nxt, entries, removed}
