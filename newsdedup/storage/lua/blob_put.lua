-- KEYS[1]: one article's blob. ARGV: the version these fields belong to, then field, value, ...
-- Replaces the blob (fields of this version only), unless a newer version's blob is there: a slow
-- worker must not overwrite what a worker of the next version already wrote. Returns 1 if written.
local v = redis.call("HGET", KEYS[1], "ver")
if v and tonumber(v) > tonumber(ARGV[1]) then return 0 end
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "ver", unpack(ARGV))
return 1
