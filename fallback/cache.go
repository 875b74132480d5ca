package fallback

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/internal/redisopt"
)

// ErrCacheMiss is returned by [Cache.Serve] when it holds no fresh reply for the request.
var ErrCacheMiss = errors.New("fallback: no cached reply for this request")

// CacheConfig configures a [Cache]. The zero value gives the documented defaults.
type CacheConfig struct {
	// Name identifies the target; default "cache".
	Name string
	// TTL is how long a stored reply may be served; default 10 minutes.
	TTL time.Duration
	// MaxEntries bounds the number of replies kept; default 1024. The least recently
	// used reply is evicted first.
	MaxEntries int
	// MaxBytes bounds the total size of the replies kept; default 32 MiB.
	MaxBytes int64
	// MaxEntryBytes is the largest reply that is stored at all; default 1 MiB.
	MaxEntryBytes int64

	// Redis, when set, keeps the replies in Redis instead of in this process, so that
	// every replica of a service shares them: a replica that starts during an outage
	// can still serve its tenants' last good answers. The key rules are the same (per
	// tenant, upstream host and path; completion-style operations only); each reply
	// expires with TTL through Redis's own expiry, and MaxEntries bounds how many are
	// kept (the oldest go first). The client must have ContextTimeoutEnabled so that
	// RedisTimeout bounds each command; it is never closed by the cache. A failing
	// Redis costs a store (dropped) or a lookup (a miss), never a call.
	Redis redis.UniversalClient
	// RedisPrefix names the cache's Redis keys; "" means "infermesh:cache:". It is
	// their hash tag: in Redis Cluster all of one cache's keys share a slot.
	RedisPrefix string
	// RedisTimeout bounds one Redis command; 0 means 50 ms.
	RedisTimeout time.Duration
}

// Cache is a [Target] that serves the last good reply to the same request of the same
// tenant at the same upstream: its key is the caller's credential fingerprint
// (Request.Tenant), the upstream host, the request path (Azure deployments differ by
// path) and the request body with its fields sorted and the stream flags removed, so a
// streamed call can be answered from a non-streamed reply and the other way round. Only
// completion-style operations are kept and served (chat, legacy completions, the
// Responses API, embeddings): a create, such as a batch, is never replayed as if it had
// been made again. Its responses carry [HeaderDegraded] "cache" and an Age header. It is
// safe for concurrent use.
type Cache struct {
	cfg   CacheConfig
	redis *redisStore // nil: the replies are kept in this process

	mu    sync.Mutex
	order *list.List // front = most recently used; values are *cacheEntry
	byKey map[string]*list.Element
	bytes int64
}

type cacheEntry struct {
	key    string
	body   []byte
	stored time.Time
}

// NewCache validates cfg and returns an empty cache.
func NewCache(cfg CacheConfig) (*Cache, error) {
	switch {
	case cfg.TTL < 0:
		return nil, fmt.Errorf("fallback: CacheConfig.TTL %v is negative", cfg.TTL)
	case cfg.MaxEntries < 0:
		return nil, fmt.Errorf("fallback: CacheConfig.MaxEntries %d is negative", cfg.MaxEntries)
	case cfg.MaxBytes < 0:
		return nil, fmt.Errorf("fallback: CacheConfig.MaxBytes %d is negative", cfg.MaxBytes)
	case cfg.MaxEntryBytes < 0:
		return nil, fmt.Errorf("fallback: CacheConfig.MaxEntryBytes %d is negative", cfg.MaxEntryBytes)
	case cfg.RedisTimeout < 0:
		return nil, fmt.Errorf("fallback: CacheConfig.RedisTimeout %v is negative", cfg.RedisTimeout)
	case cfg.Redis != nil && !redisopt.HonoursDeadlines(cfg.Redis):
		return nil, errors.New("fallback: CacheConfig.Redis must be created with ContextTimeoutEnabled, so that RedisTimeout bounds its commands")
	}
	if cfg.Name == "" {
		cfg.Name = "cache"
	}
	if cfg.TTL == 0 {
		cfg.TTL = 10 * time.Minute
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 1024
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 32 << 20
	}
	if cfg.MaxEntryBytes == 0 {
		cfg.MaxEntryBytes = 1 << 20
	}
	if cfg.MaxEntryBytes > cfg.MaxBytes {
		return nil, fmt.Errorf("fallback: CacheConfig.MaxEntryBytes %d exceeds MaxBytes %d", cfg.MaxEntryBytes, cfg.MaxBytes)
	}
	c := &Cache{cfg: cfg, order: list.New(), byKey: make(map[string]*list.Element)}
	if cfg.Redis != nil {
		c.redis = newRedisStore(cfg)
	}
	return c, nil
}

// Name returns the target's name.
func (c *Cache) Name() string { return c.cfg.Name }

// InProcess reports that the cache answers from inside this process.
func (c *Cache) InProcess() bool { return true }

// Len returns the number of replies held (with Redis: kept in its index, -1 when Redis
// does not answer).
func (c *Cache) Len() int {
	if c.redis != nil {
		return c.redis.len()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// MaxEntryBytes returns the largest reply the cache stores: a caller putting a reply
// together (a stream's text) can stop once it is past it.
func (c *Cache) MaxEntryBytes() int64 { return c.cfg.MaxEntryBytes }

// CacheKey returns the key of r: a hash of its tenant, its upstream host and path, and
// its JSON body with keys sorted and the fields that do not change the answer (stream,
// stream_options) removed.
func CacheKey(r *Request) (string, error) {
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		return "", fmt.Errorf("fallback: cache key: request body is not a JSON object: %w", err)
	}
	delete(m, "stream")
	delete(m, "stream_options")
	canon, err := json.Marshal(m) // map keys marshal sorted
	if err != nil {
		return "", err
	}
	host, path := "", r.Operation
	if r.HTTP != nil && r.HTTP.URL != nil {
		host, path = r.HTTP.URL.Host, r.HTTP.URL.Path
	}
	h := sha256.New()
	for _, part := range []string{r.Tenant, host, path} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Store records body, the complete non-streamed JSON reply the primary gave to r (for a
// stream, the reply its events stand for). A reply larger than MaxEntryBytes, one for an
// operation that is not completion-style, or one for a request whose body is not JSON,
// is not stored.
func (c *Cache) Store(r *Request, body []byte) {
	if int64(len(body)) > c.cfg.MaxEntryBytes || len(body) == 0 || !llmwire.OpOf(r.Operation).Replayable() {
		return
	}
	key, err := CacheKey(r)
	if err != nil {
		return
	}
	if c.redis != nil {
		c.redis.store(key, body, time.Now())
		return
	}
	e := &cacheEntry{key: key, body: append([]byte(nil), body...), stored: time.Now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.byKey[key]; ok {
		c.bytes -= int64(len(old.Value.(*cacheEntry).body))
		c.order.Remove(old)
	}
	c.byKey[key] = c.order.PushFront(e)
	c.bytes += int64(len(e.body))
	for c.order.Len() > c.cfg.MaxEntries || c.bytes > c.cfg.MaxBytes {
		last := c.order.Back()
		le := last.Value.(*cacheEntry)
		c.order.Remove(last)
		delete(c.byKey, le.key)
		c.bytes -= int64(len(le.body))
	}
}

// lookup returns a fresh stored reply for key and its age.
func (c *Cache) lookup(key string) ([]byte, time.Duration, bool) {
	if c.redis != nil {
		return c.redis.lookup(key)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return nil, 0, false
	}
	e := el.Value.(*cacheEntry)
	age := time.Since(e.stored)
	if age > c.cfg.TTL {
		c.order.Remove(el)
		delete(c.byKey, key)
		c.bytes -= int64(len(e.body))
		return nil, 0, false
	}
	c.order.MoveToFront(el)
	return e.body, age, true
}

// Serve answers r with the stored reply, rendered as a stream when r asks for one.
func (c *Cache) Serve(_ context.Context, r *Request) (*http.Response, error) {
	if !llmwire.OpOf(r.Operation).Replayable() {
		return nil, ErrUnsupported
	}
	key, err := CacheKey(r)
	if err != nil {
		return nil, err
	}
	body, age, ok := c.lookup(key)
	if !ok {
		return nil, ErrCacheMiss
	}
	var resp *http.Response
	if r.Stream {
		if resp, err = renderStored(r, body); err != nil {
			return nil, err
		}
	} else {
		resp = newResponse(r, "application/json", body)
	}
	resp.Header.Set(HeaderDegraded, "cache")
	resp.Header.Set("Age", strconv.Itoa(int(age/time.Second)))
	return resp, nil
}
