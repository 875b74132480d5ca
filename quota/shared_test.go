package quota_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infermesh/infermesh/internal/redistest"
	"github.com/infermesh/infermesh/quota"
)

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
	}
}

// refusedBy reports whether err is a quota refusal by kind.
func refusedBy(err error, kind quota.Kind) bool {
	var qe *quota.Error
	return errors.As(err, &qe) && qe.Kind == kind
}

// sharedLimiter returns a Limiter sharing through its own client of srv.
func sharedLimiter(t *testing.T, srv *redistest.Server, c quota.Config) *quota.Limiter {
	t.Helper()
	c.Redis = srv.Client()
	return newLimiter(t, c)
}

func TestNewRefusesClientWithoutContextTimeout(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if _, err := quota.New(quota.Config{Redis: c}); err == nil || !strings.Contains(err.Error(), "Config.Redis") {
		t.Fatalf("New with a client without ContextTimeoutEnabled: %v, want an error naming Config.Redis", err)
	}
}

func TestSharedReplicasShareOneQuota(t *testing.T) {
	srv := startRedis(t)
	cfg := quota.Config{
		Limits:  map[string]quota.Limits{"k": {RequestsPerMinute: 10, TokensPerMinute: 1000}},
		MaxWait: quota.NoWait,
	}
	a, b := sharedLimiter(t, srv, cfg), sharedLimiter(t, srv, cfg)
	ctx := context.Background()
	var held []*quota.Reservation
	for i := range 10 {
		r, err := []*quota.Limiter{a, b}[i%2].Reserve(ctx, "k", 10)
		if err != nil {
			t.Fatalf("call %d of 10: %v", i, err)
		}
		held = append(held, r)
	}
	for _, l := range []*quota.Limiter{a, b} {
		if _, err := l.Reserve(ctx, "k", 10); !refusedBy(err, quota.Requests) {
			t.Fatalf("11th call: %v, want refused by Requests", err)
		}
	}
	// A cancelled call gives its request back to every replica.
	held[0].Cancel()
	eventually(t, 5*time.Second, "b sees the request a gave back", func() bool {
		r, err := b.Reserve(ctx, "k", 10)
		if err == nil {
			held[0] = r
		}
		return err == nil
	})

	// True-up: a reserves 800 tokens and uses 100; b gets the 700 back.
	tok := quota.Config{Limits: map[string]quota.Limits{"t": {TokensPerMinute: 1000}}, MaxWait: quota.NoWait}
	a, b = sharedLimiter(t, srv, tok), sharedLimiter(t, srv, tok)
	r, err := a.Reserve(ctx, "t", 800)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, "t", 500); !refusedBy(err, quota.Tokens) {
		t.Fatalf("500 of the 200 left: %v, want refused by Tokens", err)
	}
	r.Settle(100)
	eventually(t, 5*time.Second, "b sees the tokens a gave back", func() bool {
		_, err := b.Reserve(ctx, "t", 850)
		return err == nil
	})
	// And the other way: a uses more than it reserved.
	r, err = a.Reserve(ctx, "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	r.Settle(5000) // far over: the debt is bounded at one window
	eventually(t, 5*time.Second, "b sees the tokens a took", func() bool {
		_, err := b.Reserve(ctx, "t", 1)
		return refusedBy(err, quota.Tokens)
	})
}

func TestSharedProviderSignalsReachEveryReplica(t *testing.T) {
	srv := startRedis(t)
	cfg := quota.Config{Limits: map[string]quota.Limits{"k": {RequestsPerMinute: 1000}}, MaxWait: quota.NoWait}
	a, b := sharedLimiter(t, srv, cfg), sharedLimiter(t, srv, cfg)
	ctx := context.Background()
	for _, l := range []*quota.Limiter{a, b} {
		if _, err := l.Reserve(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
	}
	// One replica gets a 429 with Retry-After; the other stops too, for that long.
	a.Observe("k", http.Header{"Retry-After": {"3"}}, http.StatusTooManyRequests)
	start := time.Now()
	eventually(t, 2*time.Second, "b refused after a's 429", func() bool {
		_, err := b.Reserve(ctx, "k", 1)
		return refusedBy(err, quota.Exhausted)
	})
	_, err := b.Reserve(ctx, "k", 1)
	var qe *quota.Error
	if !errors.As(err, &qe) || qe.Wait <= 3*time.Second-time.Since(start)-time.Second || qe.Wait > 3*time.Second {
		t.Fatalf("b's refusal: %v, want a wait of about 3s less the time since the 429", err)
	}
	if b.Available("k") {
		t.Error("b Available while the key is exhausted")
	}

	// What remains at the provider reaches the others too.
	c, d := sharedLimiter(t, srv, quota.Config{MaxWait: quota.NoWait, Limits: map[string]quota.Limits{"r": {RequestsPerMinute: 1000}}}),
		sharedLimiter(t, srv, quota.Config{MaxWait: quota.NoWait, Limits: map[string]quota.Limits{"r": {RequestsPerMinute: 1000}}})
	c.Observe("r", http.Header{"X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"1m0s"}}, http.StatusOK)
	eventually(t, 2*time.Second, "d refused after c learned nothing remains", func() bool {
		_, err := d.Reserve(ctx, "r", 1)
		return refusedBy(err, quota.Requests)
	})
}

func TestSharedOneRoundTripPerAdmission(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client()
	// Commands other than admissions, less the heartbeat (once a second) and go-redis's own
	// setup of a new connection.
	var admits atomic.Int64
	var mu sync.Mutex
	var others []string
	client.AddHook(hook(func(cmd redis.Cmder) {
		switch args := cmd.Args(); {
		case len(args) > 6 && args[6] == "admit":
			admits.Add(1)
		case len(args) > 3 && strings.HasSuffix(fmt.Sprint(args[3]), "replicas"):
		case cmd.Name() == "hello" || cmd.Name() == "client":
		default:
			mu.Lock()
			others = append(others, fmt.Sprint(args))
			mu.Unlock()
		}
	}))
	l := newLimiter(t, quota.Config{Redis: client, Limits: map[string]quota.Limits{"k": {RequestsPerMinute: 1 << 20, TokensPerMinute: 1 << 30}}})
	ctx := context.Background()
	warm, err := l.Reserve(ctx, "k", 10) // loads the script
	if err != nil {
		t.Fatal(err)
	}
	warm.Settle(10)
	const n = 200
	admits.Store(0)
	mu.Lock()
	others = nil
	mu.Unlock()
	for range n {
		r, err := l.Reserve(ctx, "k", 10)
		if err != nil {
			t.Fatal(err)
		}
		r.Settle(10) // as estimated: nothing to true up
	}
	mu.Lock()
	if got := admits.Load(); got != n || len(others) != 0 {
		t.Fatalf("%d admissions sent %d admission commands and others %v, want %d and none", n, got, others, n)
	}
	mu.Unlock()
	// After SCRIPT FLUSH (or a restart) the script is sent again and admission still works.
	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := l.Reserve(ctx, "k", 10)
	if err != nil {
		t.Fatalf("Reserve after SCRIPT FLUSH: %v", err)
	}
	r.Settle(10)
	if admits.Load() != n+2 {
		t.Fatalf("after SCRIPT FLUSH: %d admission commands, want EVALSHA then EVAL", admits.Load()-n)
	}
}

func TestSharedKeysExpireAndCarryPrefix(t *testing.T) {
	srv := startRedis(t)
	client := srv.Client()
	const window = 300 * time.Millisecond
	l := newLimiter(t, quota.Config{
		Redis: client, Prefix: "test:q:", Window: window,
		Limits: map[string]quota.Limits{"k": {RequestsPerMinute: 10, TokensPerMinute: 1000}},
	})
	ctx := context.Background()
	r, err := l.Reserve(ctx, "k", 500)
	if err != nil {
		t.Fatal(err)
	}
	r.Settle(500)
	l.Observe("k", http.Header{"Retry-After-Ms": {"200"}}, http.StatusTooManyRequests)
	want := []string{"test:q:replicas", "test:q:{k}:exhausted", "test:q:{k}:requests", "test:q:{k}:tokens"}
	eventually(t, 2*time.Second, "the exhaustion reaches Redis", func() bool {
		return client.Exists(ctx, "test:q:{k}:exhausted").Val() == 1
	})
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sorted(keys), " ") != strings.Join(want, " ") {
		t.Fatalf("keys %v, want %v", sorted(keys), want)
	}
	for _, k := range keys {
		ttl := client.PTTL(ctx, k).Val()
		limit := 2*window + 2*time.Millisecond
		if k == "test:q:replicas" {
			limit = 3 * time.Second
		}
		if ttl <= 0 || ttl > limit {
			t.Errorf("%s: PTTL %v, want in (0, %v]", k, ttl, limit)
		}
	}
	// Once every bucket is full again, the key's state is gone.
	eventually(t, 5*time.Second, "the key's Redis keys expire", func() bool {
		n, _ := client.Exists(ctx, want[1:]...).Result()
		return n == 0
	})
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// modes records a Limiter's ModeChanged calls.
type modes struct {
	mu      sync.Mutex
	changes []modeChange
}

type modeChange struct {
	at     time.Time
	shared bool
	cause  error
}

func (m *modes) hook(shared bool, cause error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.changes = append(m.changes, modeChange{time.Now(), shared, cause})
}

func (m *modes) last() (modeChange, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.changes) == 0 {
		return modeChange{shared: true}, 0
	}
	return m.changes[len(m.changes)-1], len(m.changes)
}

// TestSharedRedisStalled stops redis-server without killing it: admission falls back within
// RedisTimeout, and when Redis answers again the shared quota is charged with what was
// admitted locally meanwhile.
func TestSharedRedisStalled(t *testing.T) {
	srv := startRedis(t)
	var m modes
	cfg := quota.Config{Limits: map[string]quota.Limits{"k": {RequestsPerMinute: 60}}, MaxWait: quota.NoWait}
	cfg.Hooks.ModeChanged = m.hook
	a := sharedLimiter(t, srv, cfg)
	ctx := context.Background()
	for range 10 {
		if _, err := a.Reserve(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
	}
	srv.Pause() // accepts connections, answers nothing
	defer srv.Resume()
	stalled := time.Now()
	var slowest time.Duration
	for range 20 {
		start := time.Now()
		if _, err := a.Reserve(ctx, "k", 1); err != nil {
			t.Fatalf("Reserve with Redis stalled: %v", err)
		}
		slowest = max(slowest, time.Since(start))
	}
	// RedisTimeout is 50ms; go-redis would otherwise wait its ReadTimeout (5s). The bound
	// leaves room for a loaded machine.
	if slowest > time.Second {
		t.Fatalf("slowest Reserve with Redis stalled took %v", slowest)
	}
	if c, n := m.last(); n != 1 || c.shared || c.cause == nil {
		t.Fatalf("mode changes: %d, last %+v; want one switch to local with its cause", n, c)
	}
	t.Logf("Redis stalled: slowest of 20 admissions %v; the mode change said %v", slowest, m.changes[0].cause)
	srv.Resume()
	eventually(t, 5*time.Second, "back to shared mode after Redis resumes", func() bool {
		c, _ := m.last()
		return c.shared
	})
	// 10 shared and 20 local admissions of 60 per minute (one more per second since): another
	// replica finds 30 left, not the 50 Redis saw. The round trip that timed out still
	// reaches Redis when it resumes, so that admission may count twice: on the safe side.
	b := sharedLimiter(t, srv, quota.Config{Limits: cfg.Limits, MaxWait: quota.NoWait})
	left := 0
	for range 60 {
		if _, err := b.Reserve(ctx, "k", 1); err == nil {
			left++
		}
	}
	if refill := int(time.Since(stalled).Seconds()) + 1; left < 29 || left > 30+refill {
		t.Fatalf("another replica found %d requests left, want 30 (-1 timed out, +%d refilled)", left, refill)
	}
}

// TestSharedFallbackDividesLimits checks that while Redis is down each replica admits its
// share of the limits: the limit divided by the replicas that shared it.
func TestSharedFallbackDividesLimits(t *testing.T) {
	srv := startRedis(t)
	cfg := quota.Config{Limits: map[string]quota.Limits{"k": {RequestsPerMinute: 10}}, MaxWait: quota.NoWait}
	a, b := sharedLimiter(t, srv, cfg), sharedLimiter(t, srv, cfg)
	probe := srv.Client()
	ctx := context.Background()
	eventually(t, 5*time.Second, "both replicas in the set", func() bool {
		return probe.ZCard(ctx, quota.DefaultPrefix+"replicas").Val() == 2
	})
	time.Sleep(2 * time.Second) // each has counted both at its next heartbeat (every second)
	srv.Kill()
	for _, l := range []*quota.Limiter{a, b} {
		admitted := 0
		for range 10 {
			if _, err := l.Reserve(ctx, "k", 0); err == nil {
				admitted++
			} else if !refusedBy(err, quota.Requests) {
				t.Fatalf("Reserve with Redis down: %v", err)
			}
		}
		if admitted != 5 {
			t.Errorf("a replica admitted %d of 10 per minute with Redis down, want its half: 5", admitted)
		}
	}
}

// TestSharedRedisDownAtStart: a Limiter whose Redis never answers admits on its local limits.
func TestSharedRedisDownAtStart(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: redistest.FreeAddr(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() }) // after the Limiter's Close
	var m modes
	l := newLimiter(t, quota.Config{Redis: c, Limits: map[string]quota.Limits{"k": {RequestsPerMinute: 3}},
		MaxWait: quota.NoWait, Hooks: quota.Hooks{ModeChanged: m.hook}})
	admitted := 0
	for range 5 {
		if _, err := l.Reserve(context.Background(), "k", 0); err == nil {
			admitted++
		} else if !refusedBy(err, quota.Requests) {
			t.Fatalf("Reserve with no Redis: %v", err)
		}
	}
	if admitted != 3 {
		t.Errorf("admitted %d of 3 per minute on local limits", admitted)
	}
	if c, n := m.last(); n != 1 || c.shared || c.cause == nil {
		t.Errorf("mode changes: %d, last %+v; want one switch to local with its cause", n, c)
	}
}
