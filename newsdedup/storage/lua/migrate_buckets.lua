-- KEYS: band-table state, legacy bucket hashes (nd:lsh:{band}:{bucket}; field = band value,
-- value = packed members).  ARGV: bucket prefix, initial level, load, bands, then the band of each
-- legacy key.  Moves their entries into the band table and deletes them; returns entries moved.
-- Runs after band_table.lua (the loader puts that library in front of it).
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
