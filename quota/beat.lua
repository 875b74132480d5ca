-- Counts the replicas that share the limits: each Limiter adds itself with the time it was
-- last seen, and one not seen for ARGV[2] microseconds no longer counts.
-- KEYS[1] the set of replicas; ARGV[1] this Limiter's id. Returns {how many replicas count,
-- 1 when this one was not in the set}.
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local stale = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now - stale))
local added = redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(stale / 1000))
return {redis.call('ZCARD', KEYS[1]), added}
