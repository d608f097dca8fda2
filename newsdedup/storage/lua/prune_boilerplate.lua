-- KEYS[1]: one source's boilerplate hash.  ARGV: max_fields
-- Line shapes seen in a single story are forgotten once the hash grows past max_fields:
-- chrome is seen again and again and keeps its count, a story's own lines never come back.
if redis.call("HLEN", KEYS[1]) <= tonumber(ARGV[1]) then return 0 end
local removed = 0
local cursor = "0"
repeat
  local res = redis.call("HSCAN", KEYS[1], cursor, "COUNT", 1000)
  cursor = res[1]
  local kv = res[2]
  for j = 1, #kv, 2 do
    if kv[j + 1] == "1" and kv[j] ~= "#docs" then
      redis.call("HDEL", KEYS[1], kv[j])
      removed = removed + 1
    end
  end
until cursor == "0"
return removed
