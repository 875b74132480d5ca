package quota

import (
	"sync"
	"time"
)

// Limiter admits calls per key against their limits. It is safe for concurrent use. A
// Limiter keeps a little state for every key it has seen.
type Limiter struct {
	set    settings
	hooks  Hooks
	limits map[string]Limits
	start  time.Time // the Limiter's clock counts nanoseconds from here
	keys   sync.Map  // key name → *keyState
	sh     *shared   // nil when local only
}

// New returns a Limiter for c, or an error that names the first invalid field. With
// c.Redis set it starts one goroutine that keeps the shared mode alive (see the package
// documentation); [Limiter.Close] stops it.
func New(c Config) (*Limiter, error) {
	set, err := c.resolve()
	if err != nil {
		return nil, err
	}
	l := &Limiter{set: set, hooks: c.Hooks, start: time.Now(), limits: make(map[string]Limits, len(c.Limits))}
	for name, lim := range c.Limits {
		l.limits[name] = lim
	}
	if c.Redis != nil {
		l.sh = newShared(c.Redis, set.prefix)
	}
	for name := range l.limits {
		l.keys.Store(name, l.newKey(name))
	}
	if l.sh != nil {
		go l.run()
	}
	return l, nil
}

// Close stops the goroutine of the shared mode and waits for it; from then on the Limiter
// admits on its local limits only. It does not close Config.Redis. Close is idempotent and
// returns nil; a Limiter without Redis has nothing to close.
func (l *Limiter) Close() error {
	if l.sh != nil {
		l.sh.close()
	}
	return nil
}

// Available reports whether a call of key could be admitted now without waiting, judged from
// what this Limiter already knows, without a round trip: a free concurrency slot, no
// exhaustion learned from the provider, and a request and a token left (in shared mode, as
// the last shared admission of the key left them, refilled since). A router can use it to
// skip a backend that is out of quota.
func (l *Limiter) Available(key string) bool {
	v, ok := l.keys.Load(key)
	if !ok {
		return true
	}
	k := v.(*keyState)
	if k.slots != nil && len(k.slots) == cap(k.slots) {
		return false
	}
	share := l.localShare()
	k.mu.Lock()
	defer k.mu.Unlock()
	w, _ := k.localWait(l.now(), share, share, share, int64(l.set.window), l.set.headroom) // one of the whole limit
	return w == 0
}

// now reads the Limiter's clock: nanoseconds since New, monotonic.
func (l *Limiter) now() int64 { return l.clock(time.Now()) }

// clock converts t to the Limiter's clock.
func (l *Limiter) clock(t time.Time) int64 { return int64(t.Sub(l.start)) }

// localShare is the part of each limit the local buckets admit: all of it without Redis, and
// 1/n while Redis is down, n being how many replicas shared the limits when it was last seen.
func (l *Limiter) localShare() float64 {
	if l.sh == nil {
		return 1
	}
	return 1 / float64(max(l.sh.replicas.Load(), 1))
}

// key returns the state of key, creating it on first use.
func (l *Limiter) key(name string) *keyState {
	if v, ok := l.keys.Load(name); ok {
		return v.(*keyState)
	}
	v, _ := l.keys.LoadOrStore(name, l.newKey(name))
	return v.(*keyState)
}

func (l *Limiter) newKey(name string) *keyState {
	k := &keyState{name: name, limits: l.limits[name]}
	if n := k.limits.MaxConcurrent; n > 0 {
		k.slots = make(chan struct{}, n)
	}
	if l.sh != nil {
		k.redisKeys = l.sh.keysOf(name)
	}
	k.pending.reset()
	return k
}

// keyState is everything a Limiter knows of one key.
type keyState struct {
	name      string
	limits    Limits        // configured
	slots     chan struct{} // one entry per call in flight; nil without MaxConcurrent
	redisKeys []string      // requests bucket, tokens bucket, exhausted-until; nil without Redis

	mu              sync.Mutex
	learnedRequests int    // from x-ratelimit-limit-requests; 0 = none learned
	learnedTokens   int    // from x-ratelimit-limit-tokens; 0 = none learned
	requests        bucket // the local limits
	tokens          bucket
	exhaustedUntil  int64      // the provider said exhausted until then (Limiter clock)
	pending         adjustment // shared mode: what the next flush sends to Redis
	localRequests   int        // with Redis: admitted locally since Redis was last reached
	localTokens     int        // likewise, trued up
}

// effective returns the key's limits per window: the configured ones, lowered to what the
// provider said its limits are; 0 is no limit. The caller holds k.mu.
func (k *keyState) effective() (requests, tokens float64) {
	return float64(lower(k.limits.RequestsPerMinute, k.learnedRequests)),
		float64(lower(k.limits.TokensPerMinute, k.learnedTokens))
}

// lower returns the smaller of two limits where 0 means none.
func lower(a, b int) int {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// localWait returns how long a call taking requests and tokens must wait on the local limits
// (share of each) and the limit that makes it wait longest. The caller holds k.mu.
func (k *keyState) localWait(now int64, requests, tokens, share float64, window, headroom int64) (int64, Kind) {
	req, tok := k.effective()
	w, kind := k.exhaustedUntil-now, Exhausted
	if rw := k.requests.wait(now, requests, req*share, window, headroom); rw > w {
		w, kind = rw, Requests
	}
	if tw := k.tokens.wait(now, tokens, tok*share, window, headroom); tw > w {
		w, kind = tw, Tokens
	}
	return max(w, 0), kind
}

// chargeLocal takes requests and tokens out of the local buckets; negative values give them
// back. With Redis (sharedToo) it also counts them for the shared quota, which learns them
// when Redis is back (see carryLocal). The caller holds k.mu.
func (k *keyState) chargeLocal(now int64, requests, tokens int, share float64, window int64, sharedToo bool) {
	req, tok := k.effective()
	k.requests.charge(now, float64(requests), req*share, window)
	k.tokens.charge(now, float64(tokens), tok*share, window)
	if sharedToo {
		k.localRequests += requests
		k.localTokens += tokens
	}
}
