-- KEYS: cluster hash, member set, ... (pairs).  Returns per pair the version (false for an
-- implicit singleton, which has no keys) and the members joined by ",".
local out = {}
for i = 1, #KEYS, 2 do
  local v = redis.call("HGET", KEYS[i], "v")
  out[#out + 1] = v or false
  out[#out + 1] = v and table.concat(redis.call("SMEMBERS", KEYS[i + 1]), ",") or ""
end
return out
