package quota

import (
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infermesh/infermesh/internal/redisopt"
)

// Limits are one key's limits. A zero field means no limit of that kind from the
// configuration; the key is then limited by what it learns from the provider (see
// [Limiter.Observe]).
type Limits struct {
	// RequestsPerMinute is how many calls the key may start per minute ([Config.Window]).
	RequestsPerMinute int
	// TokensPerMinute is how many tokens (prompt and completion) the key may use per minute
	// ([Config.Window]).
	TokensPerMinute int
	// MaxConcurrent is how many calls of the key may be in flight at once in this process,
	// from [Limiter.Reserve] to [Reservation.Settle] or [Reservation.Cancel]. It is never
	// shared through Redis: a shared count of calls in flight would keep the slots of a
	// replica that died.
	MaxConcurrent int
}

// Defaults of [Config].
const (
	// DefaultMaxWait is the longest a call waits for quota when Config.MaxWait is zero.
	DefaultMaxWait = 10 * time.Second
	// DefaultRedisTimeout bounds one Redis round trip when Config.RedisTimeout is zero.
	DefaultRedisTimeout = 50 * time.Millisecond
	// DefaultPrefix starts every Redis key when Config.Prefix is empty.
	DefaultPrefix = "infermesh:quota:"
	// DefaultWindow is the length of a "minute" when Config.Window is zero.
	DefaultWindow = time.Minute
	// DefaultHeadroom is Config.Headroom when it is zero.
	DefaultHeadroom = 100 * time.Millisecond
)

// NoHeadroom, as Config.Headroom, admits calls exactly on the limits' own schedule.
const NoHeadroom time.Duration = -1

// NoWait, as Config.MaxWait, refuses a call at once when it cannot be admitted now.
const NoWait time.Duration = -1

// Config configures a [Limiter]. The zero Config is valid: no configured limits (keys are
// limited by what they learn), local only, the defaults above.
type Config struct {
	// Limits holds the limits per key; llmclient uses the backend name as the key. A key
	// that is not in the map is limited only by what it learns from the provider.
	Limits map[string]Limits

	// Window is the length of the "minute" of RequestsPerMinute and TokensPerMinute, and of
	// the limits learned from x-ratelimit-limit-* headers. Zero means DefaultWindow (one
	// minute, as providers count). A shorter window scales a test or a simulation down.
	Window time.Duration

	// MaxWait is the longest a call waits in [Limiter.Reserve] for quota; a call never waits
	// past its context's deadline either. Zero means DefaultMaxWait; NoWait refuses at once
	// a call that cannot be admitted now. Other negative values are an error.
	MaxWait time.Duration

	// Headroom is added to every wait for a bucket to refill, so that a call that had to
	// wait is admitted Headroom after the limits' own schedule. A provider counts a call
	// when it arrives, and its buckets start their clock at the first call it sees: when
	// that call took longer to arrive than a later one, the provider is stricter than the
	// Limiter by the difference, and a call admitted exactly on schedule would get a 429.
	// Headroom covers that spread of arrival times. It never lowers the rate (a saturated
	// key is still admitted at its limit per minute, shifted by Headroom) and never delays
	// a call that finds room. Zero means DefaultHeadroom (100 ms); NoHeadroom turns it off;
	// other negative values are an error.
	Headroom time.Duration

	// Redis, when set, shares the limits of every key across the processes (replicas) that
	// use the same Redis and Prefix. Nil (the default) keeps them in this process.
	//
	// A *redis.Client, *redis.ClusterClient or *redis.Ring must be created with
	// ContextTimeoutEnabled set: go-redis otherwise bounds a read by its ReadTimeout (5 s by
	// default) instead of RedisTimeout. Redis 5 or newer is required. The Limiter never
	// closes the client.
	Redis redis.UniversalClient

	// Prefix starts every Redis key the Limiter writes. Empty means DefaultPrefix.
	Prefix string

	// RedisTimeout bounds one Redis round trip; when it passes or Redis fails, the call is
	// admitted on the local limits instead. Zero means DefaultRedisTimeout (50 ms). Negative
	// values are an error.
	RedisTimeout time.Duration

	// Hooks are optional callbacks for metrics and spans.
	Hooks Hooks
}

// Hooks are callbacks for metrics and spans. A nil field is skipped. They are called without
// any lock of the Limiter held, possibly from several goroutines at once, and must not block.
type Hooks struct {
	// Admitted is called when Reserve admits a call, with how long Reserve took (the wait
	// for quota and a free slot, and the Redis round trip) and whether the shared quota in
	// Redis decided (false: the local limits did).
	Admitted func(key string, waited time.Duration, shared bool)
	// Refused is called when Reserve refuses a call with an [*Error].
	Refused func(err *Error)
	// Settled is called by [Reservation.Settle] with the tokens reserved and used.
	Settled func(key string, reserved, actual int)
	// ModeChanged is called when admission switches between the shared quota (shared true)
	// and the local limits (shared false), with the Redis error that caused a switch to
	// local.
	ModeChanged func(shared bool, cause error)
	// Learned is called by [Limiter.Observe] when a response carried quota facts.
	Learned func(key string, l Learned)
}

// settings are a Config with its defaults applied.
type settings struct {
	window       time.Duration
	maxWait      time.Duration // 0 for NoWait
	prefix       string
	redisTimeout time.Duration
	headroom     int64 // nanoseconds
}

// resolve validates c and applies its defaults.
func (c *Config) resolve() (settings, error) {
	s := settings{window: c.Window, maxWait: c.MaxWait, prefix: c.Prefix, redisTimeout: c.RedisTimeout}
	switch {
	case s.window < 0:
		return s, fmt.Errorf("quota: Config.Window must not be negative, got %v", s.window)
	case s.window == 0:
		s.window = DefaultWindow
	}
	switch {
	case s.maxWait == NoWait:
		s.maxWait = 0
	case s.maxWait < 0:
		return s, fmt.Errorf("quota: Config.MaxWait must be NoWait or not negative, got %v", s.maxWait)
	case s.maxWait == 0:
		s.maxWait = DefaultMaxWait
	}
	switch {
	case s.redisTimeout < 0:
		return s, fmt.Errorf("quota: Config.RedisTimeout must not be negative, got %v", s.redisTimeout)
	case s.redisTimeout == 0:
		s.redisTimeout = DefaultRedisTimeout
	}
	switch h := c.Headroom; {
	case h == NoHeadroom:
	case h < 0:
		return s, fmt.Errorf("quota: Config.Headroom must be NoHeadroom or not negative, got %v", h)
	case h == 0:
		s.headroom = int64(DefaultHeadroom)
	default:
		s.headroom = int64(h)
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	keys := make([]string, 0, len(c.Limits))
	for k := range c.Limits {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first bad key in the error is the same on every run
	for _, k := range keys {
		if err := c.Limits[k].validate(k); err != nil {
			return s, err
		}
	}
	if c.Redis != nil {
		if err := checkContextTimeout(c.Redis); err != nil {
			return s, err
		}
	}
	return s, nil
}

func (l Limits) validate(key string) error {
	for _, f := range []struct {
		name string
		v    int
	}{{"RequestsPerMinute", l.RequestsPerMinute}, {"TokensPerMinute", l.TokensPerMinute}, {"MaxConcurrent", l.MaxConcurrent}} {
		if f.v < 0 {
			return fmt.Errorf("quota: Config.Limits[%q].%s must not be negative, got %d", key, f.name, f.v)
		}
	}
	return nil
}

// checkContextTimeout refuses a go-redis client that ignores context deadlines on reads, so
// that RedisTimeout really bounds a round trip.
func checkContextTimeout(c redis.UniversalClient) error {
	if !redisopt.HonoursDeadlines(c) {
		return fmt.Errorf("quota: Config.Redis: the client must have ContextTimeoutEnabled set, " +
			"or a slow Redis could hold a call for its ReadTimeout instead of RedisTimeout")
	}
	return nil
}
