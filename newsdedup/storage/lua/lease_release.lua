-- The sweeper lease (KEYS[1]): deleted only by the holder of the token (ARGV[1]).
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
