package fallback

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStore keeps a Cache's replies in Redis: one key per reply (the stored time, then the
// body), expiring with the TTL, and a sorted set of the keys by stored time that bounds
// their number.
type redisStore struct {
	client  redis.UniversalClient
	prefix  string
	index   string
	ttl     time.Duration
	max     int
	timeout time.Duration
}

// storeScript keeps one reply and trims the index to its bound, dropping the oldest
// replies: KEYS[1] the reply, KEYS[2] the index; ARGV[1] the value, ARGV[2] the TTL in
// milliseconds, ARGV[3] the stored time (milliseconds), ARGV[4] the bound, ARGV[5] the
// key prefix. Replies that expired on their own leave the index when they would be
// trimmed, or as they are found missing.
var storeScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  for _, k in ipairs(old) do redis.call('DEL', k) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
return 1
`)

func newRedisStore(cfg CacheConfig) *redisStore {
	prefix := cfg.RedisPrefix
	if prefix == "" {
		prefix = "infermesh:cache:"
	}
	// The prefix is the keys' hash tag, so that in Redis Cluster a reply and the index
	// that bounds them live in one slot, as the store script needs.
	prefix = "{" + prefix + "}"
	timeout := cfg.RedisTimeout
	if timeout == 0 {
		timeout = 50 * time.Millisecond
	}
	return &redisStore{client: cfg.Redis, prefix: prefix, index: prefix + "index", ttl: cfg.TTL, max: cfg.MaxEntries, timeout: timeout}
}

// store keeps body under key, best effort: a Redis that fails or is slow drops it.
func (s *redisStore) store(key string, body []byte, stored time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(body)), uint64(stored.UnixMilli()))
	v = append(v, body...)
	_ = storeScript.Run(ctx, s.client, []string{s.prefix + key, s.index}, v, s.ttl.Milliseconds(),
		stored.UnixMilli(), s.max, s.prefix).Err()
}

// lookup returns the reply stored under key and its age; a Redis that fails or is slow
// is a miss.
func (s *redisStore) lookup(key string) ([]byte, time.Duration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	v, err := s.client.Get(ctx, s.prefix+key).Bytes()
	if err != nil || len(v) < 8 {
		return nil, 0, false
	}
	stored := time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
	age := max(time.Since(stored), 0)
	if age > s.ttl {
		return nil, 0, false
	}
	return v[8:], age, true
}

// len counts the replies in the index, -1 when Redis does not answer.
func (s *redisStore) len() int {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	n, err := s.client.ZCard(ctx, s.index).Result()
	if err != nil {
		return -1
	}
	return int(n)
}
