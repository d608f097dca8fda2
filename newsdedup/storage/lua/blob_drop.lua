-- KEYS[1]: one article's blob. ARGV[1]: a version. Deletes the blob only if it holds that version's
-- fields (a worker taking back its own write after its article moved on or was removed).
if redis.call("HGET", KEYS[1], "ver") == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
