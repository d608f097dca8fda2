-- KEYS: hashes.  ARGV: fields.  Returns #KEYS x #ARGV values (false when missing).
local out = {}
local nf = #ARGV
for i = 1, #KEYS do
  local v = redis.call("HMGET", KEYS[i], unpack(ARGV))
  for f = 1, nf do out[#out + 1] = v[f] or false end
end
return out
