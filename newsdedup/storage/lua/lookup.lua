-- KEYS: band-table state.  ARGV: bucket prefix, initial level, band values (4 bytes per band).
-- Returns the concatenated 4-byte members sharing a band value (read-only: POST /v1/check).
-- Runs after band_table.lua (the loader puts that library in front of it).
local level, nxt = bt_state(KEYS[1], ARGV[2])
local vs, fs, nb = bt_values(ARGV[3])
local out = {}
for b = 1, nb do
  local s = redis.call("GET", bt_key(ARGV[1], b - 1, bt_addr(vs[b], level, nxt)))
  if s then out[#out + 1] = bt_find(s, fs[b], "") end
end
return table.concat(out)
