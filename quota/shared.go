package quota

import (
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The shared mode's two scripts. quota.lua admits a call and applies true-ups and what the
// provider said; beat.lua counts the replicas.
var (
	//go:embed quota.lua
	quotaLua string
	//go:embed beat.lua
	beatLua string
)

const (
	// beatEvery is how often the worker counts the replicas.
	beatEvery = time.Second
	// firstProbe is how soon the worker tries Redis again after it failed; the wait doubles
	// up to maxProbe while it keeps failing.
	firstProbe = 100 * time.Millisecond
	maxProbe   = 500 * time.Millisecond
	// replicaTTL is how long a replica counts after it was last seen.
	replicaTTL = 3 * beatEvery
	// rejoinGrace is how long a replica back from an outage waits for the others to be
	// back too before it returns to the shared quota without them.
	rejoinGrace = 2 * beatEvery
)

// errRedis tells admit that Redis failed and the call must be admitted locally.
var errRedis = errors.New("quota: redis failed")

// shared is the state of the shared mode.
type shared struct {
	client   redis.UniversalClient
	quota    *redis.Script
	beat     *redis.Script
	prefix   string
	id       string // this Limiter in the set of replicas
	on       atomic.Bool
	replicas atomic.Int64  // replicas seen by the last heartbeat
	downAt   atomic.Int64  // when the shared mode was last left (Unix nanoseconds)
	seen     bool          // a heartbeat went through once; the worker's own
	lost     bool          // Redis lost its state during the outage; the worker's own
	kick     chan struct{} // wakes the worker to flush true-ups
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once
}

func newShared(c redis.UniversalClient, prefix string) *shared {
	ctx, cancel := context.WithCancel(context.Background())
	s := &shared{
		client: c, quota: redis.NewScript(quotaLua), beat: redis.NewScript(beatLua),
		prefix: prefix, id: rand.Text(), kick: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	s.on.Store(true) // until Redis fails
	s.replicas.Store(1)
	return s
}

// keysOf returns the Redis keys of key name: its requests bucket, its tokens bucket and its
// exhausted-until. The name in braces is a Redis Cluster hash tag, so the three share a slot.
func (s *shared) keysOf(name string) []string {
	base := s.prefix + "{" + name + "}:"
	return []string{base + "requests", base + "tokens", base + "exhausted"}
}

func (s *shared) close() {
	s.once.Do(func() {
		s.cancel()
		<-s.done
	})
}

func (s *shared) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// admitShared admits a call on the key's shared quota in one round trip. It returns errRedis
// when Redis failed or was too slow, after switching the Limiter to its local limits.
//
// The reply also mirrors the shared buckets into the local ones. Because a bucket is kept as
// the instant it is full again, the same instant on a bucket of 1/n the capacity holds 1/n of
// the tokens: the local buckets then hold this replica's share of what is left, which is
// where the local limits start from if Redis fails.
func (l *Limiter) admitShared(ctx context.Context, k *keyState, tokens int, budget time.Duration) (time.Duration, error) {
	k.mu.Lock()
	exhausted := time.Duration(k.exhaustedUntil - l.now())
	req, tok := k.effective()
	k.mu.Unlock()
	if exhausted > budget { // known here already: no round trip
		return 0, &Error{Key: k.name, Kind: Exhausted, Wait: exhausted}
	}
	rctx, cancel := context.WithTimeout(ctx, l.set.redisTimeout)
	res, err := l.sh.quota.Run(rctx, l.sh.client, k.redisKeys, "admit", req, tok,
		l.set.window.Microseconds(), tokens, budget.Microseconds(), l.set.headroom/1000).Int64Slice()
	cancel()
	if err == nil && len(res) != 6 {
		err = fmt.Errorf("quota: unexpected reply %v from the admission script", res)
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, context.Cause(ctx)
		}
		l.setShared(false, err)
		return 0, errRedis
	}
	k.mu.Lock()
	now := l.now()
	k.requests.full = now + res[3]*1000
	k.tokens.full = now + res[4]*1000
	k.exhaustedUntil = max(k.exhaustedUntil, now+res[5]*1000)
	k.mu.Unlock()
	wait := max(time.Duration(res[1])*time.Microsecond, exhausted)
	if res[0] == 0 {
		return 0, &Error{Key: k.name, Kind: Kind(res[2]), Wait: wait}
	}
	return wait, nil
}

// giveBack queues a true-up of a shared reservation for the worker. While Redis is down it
// is dropped: the shared state it would correct is out of reach, and expires.
func (s *shared) giveBack(k *keyState, requests, tokens int) {
	if !s.on.Load() {
		return
	}
	k.mu.Lock()
	k.pending.requests += requests
	k.pending.tokens += tokens
	k.mu.Unlock()
	s.wake()
}

// unsaid marks a remaining count nobody said. A said count may be negative: a replica
// back from an outage whose local buckets hold reservations beyond empty carries that debt.
// quota.lua knows the same value.
const unsaid = math.MinInt32

// adjustment is what the worker still has to tell Redis about one key.
type adjustment struct {
	requests, tokens  int   // to give back; negative takes more
	remainingRequests int   // what remains, as the provider or a replica's carry said; unsaid
	remainingTokens   int   // likewise
	exhaustedUntil    int64 // the provider said exhausted until then (Limiter clock); 0 when not
}

func (a *adjustment) reset() { *a = adjustment{remainingRequests: unsaid, remainingTokens: unsaid} }

func (a *adjustment) empty() bool {
	return a.requests == 0 && a.tokens == 0 && a.remainingRequests == unsaid && a.remainingTokens == unsaid &&
		a.exhaustedUntil == 0
}

// note queues remaining counts (unsaid, or -1 from the provider's headers: none) and an
// exhaustion (0: none), keeping the lowest counts and the latest exhaustion since the last
// flush.
func (a *adjustment) note(remainingRequests, remainingTokens int, exhaustedUntil int64) {
	lowest := func(queued, said int) int {
		if said != unsaid && said != -1 && (queued == unsaid || said < queued) {
			return said
		}
		return queued
	}
	a.remainingRequests = lowest(a.remainingRequests, remainingRequests)
	a.remainingTokens = lowest(a.remainingTokens, remainingTokens)
	a.exhaustedUntil = max(a.exhaustedUntil, exhaustedUntil)
}

// setShared switches admission to the shared quota or to the local limits and reports the
// switch to the ModeChanged hook. A switch to local wakes the worker to probe Redis soon.
func (l *Limiter) setShared(on bool, cause error) {
	if l.sh.on.CompareAndSwap(!on, on) {
		if !on {
			l.sh.downAt.Store(time.Now().UnixNano())
			l.sh.wake()
		}
		if h := l.hooks.ModeChanged; h != nil {
			h(on, cause)
		}
	}
}

// run is the worker of the shared mode. Every beatEvery it counts the replicas; while Redis
// is down it tries again after firstProbe, then twice as long each time up to maxProbe; and
// whenever woken it sends the queued true-ups. It returns when the Limiter is closed, after
// a last flush.
func (l *Limiter) run() {
	s := l.sh
	defer close(s.done)
	timer := time.NewTimer(0) // the first heartbeat at once
	defer timer.Stop()
	probe, due := firstProbe, time.Now()
	schedule := func(d time.Duration) {
		timer.Reset(d)
		due = time.Now().Add(d)
	}
	for {
		select {
		case <-s.ctx.Done():
			s.on.Store(false) // without a ModeChanged: closing is no failure
			l.flush(context.WithoutCancel(s.ctx))
			return
		case <-timer.C:
			l.heartbeat()
			if s.on.Load() {
				probe = firstProbe
				schedule(beatEvery)
			} else {
				schedule(probe)
				probe = min(2*probe, maxProbe)
			}
		case <-s.kick:
			if !s.on.Load() && time.Until(due) > probe { // an admission found Redis failing
				schedule(probe)
				probe = min(2*probe, maxProbe)
			}
		}
		if s.on.Load() {
			l.flush(s.ctx)
		}
	}
}

// heartbeat adds this Limiter to the set of replicas and reads how many there are; its
// success or failure switches the mode. Before it switches back to shared, it carries what
// happened locally to Redis (carryLocal).
func (l *Limiter) heartbeat() {
	s := l.sh
	ctx, cancel := context.WithTimeout(s.ctx, l.set.redisTimeout)
	defer cancel()
	res, err := s.beat.Run(ctx, s.client, []string{s.prefix + "replicas"}, s.id, replicaTTL.Microseconds()).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("quota: unexpected reply %v from the heartbeat script", res)
	}
	switch {
	case s.ctx.Err() != nil:
	case err != nil:
		l.setShared(false, err)
	default:
		n := max(res[0], 1)
		if s.on.Load() {
			s.replicas.Store(n)
			s.seen = true
			return
		}
		// Seen before but not in the set: Redis lost its state (a restart, or an outage
		// longer than replicaTTL).
		s.lost = s.lost || (s.seen && res[1] == 1)
		if s.seen && n < s.replicas.Load() && time.Since(time.Unix(0, s.downAt.Load())) < rejoinGrace {
			// The other replicas are not back yet. Until they are (or the grace ends),
			// this one keeps its share of the local limits: the first one back must not
			// take the whole quota while the others still take theirs.
			return
		}
		s.replicas.Store(n)
		l.carryLocal(s.lost)
		if !l.flush(s.ctx) {
			return
		}
		s.seen, s.lost = true, false
		l.setShared(true, nil)
	}
}

// carryLocal queues, for every key, what the shared quota missed while Redis was out of
// reach, before admissions return to it, and the exhaustion this replica knows of. When
// Redis kept its state, that is the requests and tokens this replica admitted locally: each
// replica takes its own from the shared buckets, so they get the sum. When Redis lost its
// state (lost), its buckets are full and know nothing of what came before; then each replica
// tells what its local buckets hold, scaled back to the whole limit, as remaining counts
// (the local buckets started from the shared state at the last admission; the lowest count
// wins).
func (l *Limiter) carryLocal(lost bool) {
	share, window := l.localShare(), int64(l.set.window)
	whole := func(b *bucket, limit float64, now int64) int {
		if !lost || limit <= 0 {
			return unsaid
		}
		// Below zero when the local bucket holds reservations beyond empty (callers
		// admitted to send later): Redis must not let others send in their place.
		return int(math.Floor(b.available(now, limit*share, window) / share))
	}
	l.keys.Range(func(_, v any) bool {
		k := v.(*keyState)
		k.mu.Lock()
		now := l.now()
		req, tok := k.effective()
		if !lost {
			k.pending.requests -= k.localRequests
			k.pending.tokens -= k.localTokens
		}
		k.localRequests, k.localTokens = 0, 0
		k.pending.note(whole(&k.requests, req, now), whole(&k.tokens, tok, now), k.exhaustedUntil)
		k.mu.Unlock()
		return true
	})
}

// flush sends every key's queued true-ups and what the provider said, one round trip per key
// that has any, and reports whether all went through. A failure switches to the local
// limits: the failed key's part is dropped, the other keys' parts wait for Redis to be back.
func (l *Limiter) flush(base context.Context) bool {
	s := l.sh
	ok := true
	l.keys.Range(func(_, v any) bool {
		k := v.(*keyState)
		k.mu.Lock()
		a := k.pending
		k.pending.reset()
		req, tok := k.effective()
		now := l.now()
		k.mu.Unlock()
		if a.empty() {
			return true
		}
		var exhausted int64
		if a.exhaustedUntil > now {
			exhausted = (a.exhaustedUntil - now + 999) / 1000
		}
		ctx, cancel := context.WithTimeout(base, l.set.redisTimeout)
		err := s.quota.Run(ctx, s.client, k.redisKeys, "adjust", req, tok, l.set.window.Microseconds(),
			a.requests, a.tokens, a.remainingRequests, a.remainingTokens, exhausted).Err()
		cancel()
		if err != nil && base.Err() == nil {
			l.setShared(false, err)
		}
		ok = err == nil
		return ok
	})
	return ok
}
