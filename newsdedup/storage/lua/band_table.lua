-- The band table, shared by the scripts below. A bucket is a string of 8-byte entries:
-- 4-byte band value (little-endian), 4-byte article number. State (hash): level, next,
-- entries. A band value v lives in bucket v mod 2^level, or v mod 2^(level+1) when that is
-- below next (already split). Buckets split one at a time, in order, whenever the average
-- exceeds `load` entries, so every bucket stays small however large the index grows and a
-- lookup costs the same at 10k articles as at 10M.
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
-- split buckets (in every band of the group) while the average holds more than `load` entries,
-- for `added` new entries: at most twice the steps they need plus 8, so no call blocks Redis for
-- long and a table that is behind (just migrated) catches up over later calls. `where[p][addr]`
-- is the KEYS index of bucket `addr` of the group's band p (0-based): a step runs only when the
-- caller declared both buckets it touches in every band, else growing waits for a later call.
local function bt_grow(where, nbands, level, nxt, entries, load, added)
  local steps, most = 0, 8 + math.ceil(2 * added / (load * nbands))
  while steps < most and level < 31 and entries > load * nbands * (2 ^ level + nxt) do
    local m = 2 ^ level
    for p = 0, nbands - 1 do
      local w = where[p]
      if not (w and w[nxt] and w[nxt + m]) then return level, nxt end
    end
    steps = steps + 1
    local byte_i, bitv = math.floor(level / 8), 2 ^ (level % 8)
    for p = 0, nbands - 1 do
      local lo_i, hi_i = where[p][nxt], where[p][nxt + m]
      local s = redis.call("GET", KEYS[lo_i])
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
          redis.call("SET", KEYS[hi_i], table.concat(hi))
          if #lo > 0 then redis.call("SET", KEYS[lo_i], table.concat(lo)) else redis.call("DEL", KEYS[lo_i]) end
        end
      end
    end
    nxt = nxt + 1
    if nxt == m then level = level + 1; nxt = 0 end
  end
  return level, nxt
end
