-- KEYS: article hash, payload string, ... (pairs).  ARGV: fields.
-- Returns per pair the fields, then the payload (false when missing).
local out = {}
local nf = #ARGV
for i = 1, #KEYS, 2 do
  local v = redis.call("HMGET", KEYS[i], unpack(ARGV))
  for f = 1, nf do out[#out + 1] = v[f] or false end
  out[#out + 1] = redis.call("GET", KEYS[i + 1]) or false
end
return out
