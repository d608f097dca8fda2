-- The sweeper lease (KEYS[1]): renewed only by the holder of the token (ARGV[1]) for ARGV[2] ms, so a
-- worker whose lease ran out while it was busy never extends another worker's.
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end
return 0
