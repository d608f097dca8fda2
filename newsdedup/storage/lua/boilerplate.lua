-- KEYS: boilerplate hash keys (one per article, repeated as needed)
-- ARGV: per article: key_index, nshapes, shapes...
-- Returns, flat, per article: docs, count1, count2, ...: how many stories of the source were seen
-- and how many of them had each line shape (counts are written by the clustering transaction).
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
