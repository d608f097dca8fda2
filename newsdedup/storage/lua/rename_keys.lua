-- KEYS: (old name, new name) pairs. Renames each old key that exists; when the new name exists
-- already (a process of this version wrote it first) a hash is merged field by field without
-- overwriting, anything else is left where it is. Returns {renamed or merged, left}.
-- Standalone Redis only (the migration from the "nd:" prefix; a cluster never held old data).
local moved, left = 0, 0
for i = 1, #KEYS, 2 do
  local old, new = KEYS[i], KEYS[i + 1]
  if redis.call("EXISTS", old) == 1 then
    if redis.call("EXISTS", new) == 0 then
      redis.call("RENAME", old, new)
      moved = moved + 1
    elseif redis.call("TYPE", old).ok == "hash" and redis.call("TYPE", new).ok == "hash" then
      local kv = redis.call("HGETALL", old)
      for j = 1, #kv, 2 do redis.call("HSETNX", new, kv[j], kv[j + 1]) end
      redis.call("DEL", old)
      moved = moved + 1
    else
      left = left + 1
    end
  end
end
return {moved, left}
