package quota_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infermesh/infermesh/internal/redistest"
	"github.com/infermesh/infermesh/quota"
)

// provider simulates an LLM provider's rate limit for one organisation, as OpenAI's behaves:
// a bucket of requests and one of tokens that refill continuously at the limit per window.
// A call that finds either short is answered 429 with retry-after-ms; every answer carries
// x-ratelimit-* headers. It counts what it served and what it refused.
type provider struct {
	mu        sync.Mutex
	window    time.Duration
	requests  providerBucket
	tokens    providerBucket
	served    int     // calls answered 200
	series    [64]int // calls answered 200 per quarter second since the first call
	tooMany   int     // calls answered 429
	usedToken int     // tokens of the calls answered 200
	first     time.Time
}

type providerBucket struct {
	limit, level float64
	at           time.Time
}

func newProvider(requests, tokens int, window time.Duration) *provider {
	now := time.Now()
	return &provider{window: window,
		requests: providerBucket{float64(requests), float64(requests), now},
		tokens:   providerBucket{float64(tokens), float64(tokens), now}}
}

func (b *providerBucket) refill(now time.Time, window time.Duration) {
	b.level = min(b.limit, b.level+now.Sub(b.at).Seconds()*b.limit/window.Seconds())
	b.at = now
}

// short returns how long until the bucket holds n.
func (b *providerBucket) short(n float64, window time.Duration) time.Duration {
	return time.Duration(math.Max(n-b.level, 0) / b.limit * float64(window))
}

// call serves a call of the given tokens and returns its status and headers.
func (p *provider) call(tokens int) (int, http.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.first.IsZero() {
		p.first = now
	}
	p.requests.refill(now, p.window)
	p.tokens.refill(now, p.window)
	status := http.StatusOK
	h := http.Header{}
	if wait := max(p.requests.short(1, p.window), p.tokens.short(float64(tokens), p.window)); wait > 0 {
		status = http.StatusTooManyRequests
		p.tooMany++
		h.Set("retry-after-ms", strconv.FormatInt(max(wait.Milliseconds(), 1), 10))
	} else {
		p.served++
		if q := int(now.Sub(p.first) / (250 * time.Millisecond)); q < len(p.series) {
			p.series[q]++
		}
		p.usedToken += tokens
		p.requests.level--
		p.tokens.level -= float64(tokens)
	}
	for _, b := range []struct {
		kind string
		b    *providerBucket
	}{{"requests", &p.requests}, {"tokens", &p.tokens}} {
		h.Set("x-ratelimit-limit-"+b.kind, strconv.Itoa(int(b.b.limit)))
		h.Set("x-ratelimit-remaining-"+b.kind, strconv.Itoa(int(max(b.b.level, 0))))
		h.Set("x-ratelimit-reset-"+b.kind, b.b.short(b.b.limit, p.window).Round(time.Millisecond).String())
	}
	return status, h
}

// loadResult is what one load run measured.
type loadResult struct {
	calls, served, tooMany int
	refused, failed        int     // Reserve refusals (ErrQuota) and other Reserve errors
	utilisation            float64 // the binding limit's share of what the provider could serve
	series                 []int   // calls served per quarter second
}

func (r loadResult) tooManyShare() float64 { return float64(r.tooMany) / float64(max(r.calls, 1)) }

// runLoad drives workers goroutines per Limiter against p for d: each reserves an estimate
// of 150 tokens, calls the provider with its actual use (50 to 150), observes the answer,
// waits latency (the generation), and settles (a 429 with no tokens). A refused worker waits
// what the refusal says before it tries again. Calls stop at d; during is called at d/4, d/2
// and 3d/4 (for fault injection).
func runLoad(t *testing.T, p *provider, limiters []*quota.Limiter, workers int, d, latency time.Duration, during func(step int)) loadResult {
	var mu sync.Mutex
	var res loadResult
	start := time.Now()
	until := start.Add(d)
	var wg sync.WaitGroup
	for i, l := range limiters {
		for w := range workers {
			rng := rand.New(rand.NewPCG(uint64(i), uint64(w)))
			wg.Go(func() {
				for time.Now().Before(until) {
					actual := 50 + rng.IntN(101)
					ctx, cancel := context.WithDeadline(context.Background(), until)
					r, err := l.Reserve(ctx, "llm", 150)
					cancel()
					if err != nil {
						var qe *quota.Error
						mu.Lock()
						if errors.As(err, &qe) || errors.Is(err, context.DeadlineExceeded) {
							res.refused++
						} else {
							res.failed++
							t.Errorf("Reserve: %v", err)
						}
						mu.Unlock()
						if qe != nil { // as a caller would: come back when there is quota
							time.Sleep(min(max(qe.Wait, time.Millisecond), time.Until(until)))
						}
						continue
					}
					status, h := p.call(actual)
					mu.Lock()
					res.calls++
					mu.Unlock()
					if status == http.StatusTooManyRequests {
						l.Observe("llm", h, status)
						r.Settle(0) // it reached the provider: the request counts, no tokens
						continue
					}
					time.Sleep(latency)
					l.Observe("llm", h, status)
					r.Settle(actual)
				}
			})
		}
	}
	if during != nil {
		for step := 1; step <= 3; step++ {
			time.Sleep(time.Until(start.Add(time.Duration(step) * d / 4)))
			during(step)
		}
	}
	wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	res.served, res.tooMany = p.served, p.tooMany
	res.series = p.series[:int(until.Sub(p.first)/(250*time.Millisecond))+1]
	// What a perfect client could have had: a full bucket, then the refill until the end.
	span := until.Sub(p.first).Seconds() / p.window.Seconds()
	res.utilisation = max(float64(p.served)/(p.requests.limit*(1+span)), float64(p.usedToken)/(p.tokens.limit*(1+span)))
	return res
}

// The provider allows 600 requests and 60,000 tokens per window; the window is 2s instead of
// a minute so that the run takes seconds (Config.Window scales the limiter the same way).
const (
	loadRequests = 600
	loadTokens   = 60000
	loadWindow   = 2 * time.Second
	loadReplicas = 4
	loadWorkers  = 8
	loadDuration = 4 * time.Second
	loadLatency  = 20 * time.Millisecond
)

func loadLimiters(t *testing.T, srv *redistest.Server, hooks func(i int) quota.Hooks) []*quota.Limiter {
	var ls []*quota.Limiter
	for i := range loadReplicas {
		c := quota.Config{
			Limits: map[string]quota.Limits{"llm": {RequestsPerMinute: loadRequests, TokensPerMinute: loadTokens}},
			Window: loadWindow,
		}
		if hooks != nil {
			c.Hooks = hooks(i)
		}
		if srv != nil {
			c.Redis = srv.Client()
		}
		ls = append(ls, newLimiter(t, c))
	}
	return ls
}

// TestSharedQuotaAgainstProvider runs four replicas (each its own Limiter and Redis client)
// against one provider: with the shared quota, at most 1% of the calls are refused by the
// provider and at least 90% of its quota is used; with local limits only, each replica
// alone, the provider refuses far more.
func TestSharedQuotaAgainstProvider(t *testing.T) {
	srv := startRedis(t)
	var changes modes
	p := newProvider(loadRequests, loadTokens, loadWindow)
	shared := runLoad(t, p, loadLimiters(t, srv, func(int) quota.Hooks { return quota.Hooks{ModeChanged: changes.hook} }),
		loadWorkers, loadDuration, loadLatency, nil)
	changes.mu.Lock()
	for _, c := range changes.changes {
		t.Logf("mode change: shared=%v (%v)", c.shared, c.cause)
	}
	changes.mu.Unlock()
	t.Logf("shared: %d calls, %d served, %d refused by the provider (%.2f%%), %.1f%% of the quota used, %d refused by the limiter; served per 250ms %v",
		shared.calls, shared.served, shared.tooMany, 100*shared.tooManyShare(), 100*shared.utilisation, shared.refused, shared.series)

	p = newProvider(loadRequests, loadTokens, loadWindow)
	local := runLoad(t, p, loadLimiters(t, nil, nil), loadWorkers, loadDuration, loadLatency, nil)
	t.Logf("local only: %d calls, %d served, %d refused by the provider (%.2f%%), %.1f%% of the quota used, %d refused by the limiter",
		local.calls, local.served, local.tooMany, 100*local.tooManyShare(), 100*local.utilisation, local.refused)

	if shared.failed+local.failed > 0 {
		t.Errorf("Reserve failed %d times", shared.failed+local.failed)
	}
	if shared.tooManyShare() > 0.01 {
		t.Errorf("shared: %.2f%% of the calls refused by the provider, want at most 1%%", 100*shared.tooManyShare())
	}
	if shared.utilisation < 0.9 {
		t.Errorf("shared: %.1f%% of the quota used, want at least 90%%", 100*shared.utilisation)
	}
	if local.tooManyShare() < 5*max(shared.tooManyShare(), 0.01) {
		t.Errorf("local only: %.2f%% refused by the provider; the shared quota should avoid far more than that",
			100*local.tooManyShare())
	}
}

// TestSharedRedisKilledAndRestarted kills redis-server in the middle of a load run and starts
// it again on the same port: no call fails, the replicas go on with their local shares, and
// they return to the shared quota within a few seconds of the restart.
func TestSharedRedisKilledAndRestarted(t *testing.T) {
	srv := startRedis(t)
	var mu sync.Mutex
	changes := make([][]modeChange, loadReplicas)
	admittedLocal := make([]int, loadReplicas)
	admittedShared := make([]int, loadReplicas)
	limiters := loadLimiters(t, srv, func(i int) quota.Hooks {
		return quota.Hooks{
			ModeChanged: func(shared bool, cause error) {
				mu.Lock()
				defer mu.Unlock()
				changes[i] = append(changes[i], modeChange{time.Now(), shared, cause})
			},
			Admitted: func(key string, waited time.Duration, shared bool) {
				mu.Lock()
				defer mu.Unlock()
				if shared {
					admittedShared[i]++
				} else {
					admittedLocal[i]++
				}
			},
		}
	})
	p := newProvider(loadRequests, loadTokens, loadWindow)
	var killed, restarted time.Time
	var localDuringOutage, sharedBeforeKill [loadReplicas]int
	const d = 6 * time.Second
	res := runLoad(t, p, limiters, loadWorkers, d, loadLatency, func(step int) {
		mu.Lock()
		defer mu.Unlock()
		switch step {
		case 1:
			sharedBeforeKill = [loadReplicas]int(admittedShared)
			killed = time.Now()
			srv.Kill()
		case 2:
			localDuringOutage = [loadReplicas]int(admittedLocal)
			restarted = time.Now()
			mu.Unlock()
			srv.Restart()
			mu.Lock()
		}
	})
	t.Logf("Redis killed for %v: %d calls, %d served, %d refused by the provider (%.2f%%), %.1f%% of the quota used, %d refused by the limiter",
		restarted.Sub(killed).Round(time.Millisecond), res.calls, res.served, res.tooMany, 100*res.tooManyShare(), 100*res.utilisation, res.refused)
	if res.failed > 0 {
		t.Errorf("Reserve failed %d times", res.failed)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, cs := range changes {
		var desc []string
		for _, c := range cs {
			desc = append(desc, fmt.Sprintf("shared=%v at kill+%v (%v)", c.shared, c.at.Sub(killed).Round(time.Millisecond), c.cause))
		}
		t.Logf("replica %d: admitted %d shared before the kill, %d local during the outage, %d shared in all; mode changes: %s",
			i, sharedBeforeKill[i], localDuringOutage[i], admittedShared[i], strings.Join(desc, ", "))
		if sharedBeforeKill[i] == 0 || localDuringOutage[i] == 0 || admittedShared[i] == sharedBeforeKill[i] {
			t.Errorf("replica %d: want shared admissions before the kill and after the restart, local ones during the outage", i)
		}
		// What counts is the mode during the outage: the last switch before the restart must
		// be to local, with its cause, and the first switch after it back to shared. On a
		// loaded machine a slow round trip may have made that switch to local a moment
		// before the kill (and others, back and forth, earlier).
		var down, up *modeChange
		for j := range cs {
			switch c := &cs[j]; {
			case c.at.Before(restarted):
				down = c
			case up == nil && c.shared:
				up = c
			}
		}
		if down != nil && (down.shared || down.at.Before(killed.Add(-time.Second))) {
			down = nil // shared when Redis died, or local since long before: not the kill's switch
		}
		switch {
		case down == nil || down.cause == nil:
			t.Errorf("replica %d: no switch to local (with its cause) after the kill", i)
		case up == nil:
			t.Errorf("replica %d: not back to shared after the restart", i)
		case up.at.Sub(restarted) > 3*time.Second:
			t.Errorf("replica %d: back to shared %v after the restart, want within 3s", i, up.at.Sub(restarted))
		}
	}
}
