-- KEYS: band-table state, article keys...
-- ARGV: max_members, bucket prefix, initial level, load, bands, then per article:
--   akey_index, n4 (4-byte member), ver, band values (4 bytes per band; empty: not indexed),
--   nfields, (field, value) x nfields
-- Returns, per article, the concatenated 4-byte members that share a band value with it
-- (repeats included: the client removes them), or false when the article's version moved
-- on (superseded; nothing written).
-- Runs after band_table.lua (the loader puts that library in front of it).
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
