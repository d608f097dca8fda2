-- KEYS: article hashes.  ARGV per article: key index, ver, nfields, (field, value) x nfields.
-- Writes each article's fields only where its version is still `ver` (an update superseded the
-- others); returns 1 (written) or 0 per article. Runs before the band-group inserts, so whoever
-- finds an article in a bucket can read its signature.
local out = {}
local i = 1
while i <= #ARGV do
  local akey = KEYS[tonumber(ARGV[i])]
  local nf = tonumber(ARGV[i + 2])
  if redis.call("HGET", akey, "ver") ~= ARGV[i + 1] then
    out[#out + 1] = 0
  else
    if nf > 0 then redis.call("HSET", akey, unpack(ARGV, i + 3, i + 2 + 2 * nf)) end
    out[#out + 1] = 1
  end
  i = i + 3 + 2 * nf
end
return out
