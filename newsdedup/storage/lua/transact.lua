-- ARGV is a flat list of instructions: name, argument count, arguments...
-- Checks ("eqm", "exists") run first; if one fails nothing is written and the
-- script returns {0, index-of-failed-check}. Otherwise every write runs and {1} is returned.
local argv = ARGV
local instrs = {}
local i = 1
while i <= #argv do
  local name = argv[i]
  local n = tonumber(argv[i + 1])
  local args = {}
  for j = 1, n do args[j] = argv[i + 1 + j] end
  instrs[#instrs + 1] = {name, args}
  i = i + 2 + n
end
local function key(s) return KEYS[tonumber(s)] end
for idx, ins in ipairs(instrs) do
  local name, a = ins[1], ins[2]
  if name == "eqm" then  -- fields of one hash ("" = absent): one HMGET
    local nf = (#a - 1) / 2
    local fields = {}
    for f = 1, nf do fields[f] = a[2 * f] end
    local got = redis.call("HMGET", key(a[1]), unpack(fields))
    for f = 1, nf do
      local want = a[2 * f + 1]
      if want == "" then
        if got[f] then return {0, idx} end
      elseif got[f] ~= want then return {0, idx} end
    end
  elseif name == "exists" then
    if redis.call("EXISTS", key(a[1])) ~= tonumber(a[2]) then return {0, idx} end
  end
end
for _, ins in ipairs(instrs) do
  local name, a = ins[1], ins[2]
  if name == "hset" then
    redis.call("HSET", key(a[1]), unpack(a, 2))
  elseif name == "hdel" then
    redis.call("HDEL", key(a[1]), unpack(a, 2))
  elseif name == "hincrby" then
    redis.call("HINCRBY", key(a[1]), a[2], a[3])
  elseif name == "hincrn" then  -- field, delta pairs
    local k = key(a[1])
    for j = 2, #a, 2 do redis.call("HINCRBY", k, a[j], a[j + 1]) end
  elseif name == "sadd" then
    redis.call("SADD", key(a[1]), unpack(a, 2))
  elseif name == "srem" then
    redis.call("SREM", key(a[1]), unpack(a, 2))
  elseif name == "set" then
    redis.call("SET", key(a[1]), a[2])
  elseif name == "append" then
    redis.call("APPEND", key(a[1]), a[2])
  elseif name == "cut" then  -- record, separator: remove one exact record from a string of records
    local k = key(a[1])
    local s = redis.call("GET", k)
    local at = s and string.find(a[3] .. s, a[3] .. a[2], 1, true)
    if at then
      local rest = string.sub(s, 1, at - 1) .. string.sub(s, at + #a[2])
      if #rest == 0 then redis.call("DEL", k) else redis.call("SET", k, rest) end
    end
  elseif name == "incrx" then  -- delta, ttl (ms): a counter that expires
    redis.call("INCRBY", key(a[1]), a[2])
    redis.call("PEXPIRE", key(a[1]), a[3])
  elseif name == "del" then
    local ks = {}
    for j = 1, #a do ks[j] = key(a[j]) end
    redis.call("DEL", unpack(ks))
  elseif name == "zadd" then  -- score, members...
    local args = {}
    for j = 3, #a do args[#args + 1] = a[2]; args[#args + 1] = a[j] end
    redis.call("ZADD", key(a[1]), unpack(args))
  elseif name == "zrem" then
    redis.call("ZREM", key(a[1]), unpack(a, 2))
  elseif name == "xack" then  -- group, ids...
    -- a finished entry is deleted too: the stream holds only work not yet done
    redis.call("XACK", key(a[1]), a[2], unpack(a, 3))
    redis.call("XDEL", key(a[1]), unpack(a, 3))
  elseif name == "xadd" then
    redis.call("XADD", key(a[1]), "*", unpack(a, 2))
  elseif name == "xaddcap" then  -- maxlen, fields...: approximate trimming (whole stream nodes)
    redis.call("XADD", key(a[1]), "MAXLEN", "~", a[2], "*", unpack(a, 3))
  elseif name == "cutm" then  -- separator, records...: remove exact records from a string of records, in one pass
    local k, sep = key(a[1]), a[2]
    local s = redis.call("GET", k)
    if s then
      local p = sep .. s  -- a record starts the string or follows a separator
      local cuts = {}
      for j = 3, #a do
        local at = string.find(p, sep .. a[j], 1, true)
        if at then cuts[#cuts + 1] = {at, #a[j]} end
      end
      if #cuts > 0 then
        table.sort(cuts, function(x, y) return x[1] < y[1] end)
        local parts, from = {}, 1
        for _, c in ipairs(cuts) do
          if c[1] >= from then  -- (the same record asked for twice is removed once)
            parts[#parts + 1] = string.sub(s, from, c[1] - 1)
            from = c[1] + c[2]
          end
        end
        parts[#parts + 1] = string.sub(s, from)
        local rest = table.concat(parts)
        if #rest == 0 then redis.call("DEL", k) else redis.call("SET", k, rest) end
      end
    end
  elseif name == "hdecr" then  -- key, field, count pairs: take count off each field there, deleting those that reach 0
    local k = key(a[1])
    local fields = {}
    for j = 2, #a, 2 do fields[#fields + 1] = a[j] end
    local vals = redis.call("HMGET", k, unpack(fields))
    local gone = {}
    for j = 1, #vals do
      local v, c = tonumber(vals[j] or "0"), tonumber(a[2 * j + 1])
      if v > c then redis.call("HINCRBY", k, fields[j], -c) elseif v > 0 then gone[#gone + 1] = fields[j] end
    end
    if #gone > 0 then redis.call("HDEL", k, unpack(gone)) end
  elseif name == "setpx" then  -- key, value, milliseconds to live
    redis.call("SET", key(a[1]), a[2], "PX", a[3])
  end
end
return {1}
