package quota_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/quota"
)

func newLimiter(t testing.TB, c quota.Config) *quota.Limiter {
	t.Helper()
	l, err := quota.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// exactLimiter is a Limiter of c without headroom, for the tests of the buckets' exact
// schedule; TestHeadroom tests the headroom.
func exactLimiter(t testing.TB, c quota.Config) *quota.Limiter {
	t.Helper()
	c.Headroom = quota.NoHeadroom
	return newLimiter(t, c)
}

// reserve reserves and reports how long it took on the bubble's clock.
func reserve(t *testing.T, l *quota.Limiter, ctx context.Context, key string, tokens int) (*quota.Reservation, time.Duration, error) {
	t.Helper()
	start := time.Now()
	r, err := l.Reserve(ctx, key, tokens)
	return r, time.Since(start), err
}

// mustAdmit reserves and fails unless the call is admitted after exactly wait.
func mustAdmit(t *testing.T, l *quota.Limiter, key string, tokens int, wait time.Duration) *quota.Reservation {
	t.Helper()
	r, took, err := reserve(t, l, context.Background(), key, tokens)
	if err != nil {
		t.Fatalf("Reserve(%q, %d): %v", key, tokens, err)
	}
	if took != wait {
		t.Fatalf("Reserve(%q, %d) waited %v, want %v", key, tokens, took, wait)
	}
	return r
}

// mustRefuse reserves and fails unless the call is refused at once by kind with the wait.
func mustRefuse(t *testing.T, l *quota.Limiter, ctx context.Context, key string, tokens int, kind quota.Kind, wait time.Duration) {
	t.Helper()
	r, took, err := reserve(t, l, ctx, key, tokens)
	if err == nil {
		r.Cancel()
		t.Fatalf("Reserve(%q, %d) admitted, want refused by %v", key, tokens, kind)
	}
	var qe *quota.Error
	if !errors.Is(err, quota.ErrQuota) || !errors.As(err, &qe) {
		t.Fatalf("Reserve(%q, %d): %v, want a *quota.Error matching ErrQuota", key, tokens, err)
	}
	if qe.Key != key || qe.Kind != kind || qe.Wait != wait {
		t.Fatalf("refused with %+v, want key %q kind %v wait %v", *qe, key, kind, wait)
	}
	if took != 0 {
		t.Fatalf("refusal took %v, want at once", took)
	}
}

func TestReserveRequestsPerMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limits := map[string]quota.Limits{"a": {RequestsPerMinute: 60}}
		l := exactLimiter(t, quota.Config{Limits: limits})
		for range 60 {
			mustAdmit(t, l, "a", 0, 0).Settle(0)
		}
		mustAdmit(t, l, "a", 0, time.Second) // one request per second from here
		mustAdmit(t, l, "a", 0, time.Second)

		refuse := exactLimiter(t, quota.Config{Limits: limits, MaxWait: quota.NoWait})
		for range 60 {
			mustAdmit(t, refuse, "a", 0, 0)
		}
		mustRefuse(t, refuse, context.Background(), "a", 0, quota.Requests, time.Second)
		mustAdmit(t, l, "other", 0, 0) // a key without limits
	})
}

func TestReserveTokensPerMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limits := map[string]quota.Limits{"a": {TokensPerMinute: 6000}} // 100 per second
		l := exactLimiter(t, quota.Config{Limits: limits, MaxWait: time.Second})
		mustAdmit(t, l, "a", 6000, 0)
		mustAdmit(t, l, "a", 50, 500*time.Millisecond)
		mustRefuse(t, l, context.Background(), "a", 200, quota.Tokens, 2*time.Second)

		// A call larger than the limit waits for a full bucket and leaves it in debt.
		time.Sleep(2 * time.Minute)
		mustAdmit(t, l, "a", 9000, 0)
		mustRefuse(t, l, context.Background(), "a", 1, quota.Tokens, 30*time.Second+10*time.Millisecond)

		// The debt is bounded at one window.
		time.Sleep(2 * time.Minute)
		mustAdmit(t, l, "a", 1_000_000, 0)
		mustRefuse(t, l, context.Background(), "a", 6000, quota.Tokens, 2*time.Minute)
	})
}

func TestReserveWaitsWithinDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := exactLimiter(t, quota.Config{Limits: map[string]quota.Limits{"a": {RequestsPerMinute: 60}}})
		mustAdmit(t, l, "a", 0, 0)
		for range 59 {
			mustAdmit(t, l, "a", 0, 0)
		}
		short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		mustRefuse(t, l, short, "a", 0, quota.Requests, time.Second)

		long, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, took, err := reserve(t, l, long, "a", 0); err != nil || took != time.Second {
			t.Fatalf("Reserve with 2s left: took %v, %v; want admitted after 1s", took, err)
		}
	})
}

func TestReserveMaxWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := exactLimiter(t, quota.Config{Limits: map[string]quota.Limits{"a": {RequestsPerMinute: 6}}, MaxWait: 15 * time.Second})
		for range 6 {
			mustAdmit(t, l, "a", 0, 0)
		}
		mustAdmit(t, l, "a", 0, 10*time.Second) // one request per 10s from here
		var wg sync.WaitGroup
		wg.Go(func() { mustAdmit(t, l, "a", 0, 10*time.Second) })
		synctest.Wait() // it waits for its turn
		mustRefuse(t, l, context.Background(), "a", 0, quota.Requests, 20*time.Second)
		wg.Wait()
		mustAdmit(t, l, "a", 0, 10*time.Second) // the refusal took nothing
	})
}

func TestReserveCancelledWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := exactLimiter(t, quota.Config{Limits: map[string]quota.Limits{"a": {RequestsPerMinute: 60}}})
		for range 60 {
			mustAdmit(t, l, "a", 0, 0)
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		if _, took, err := reserve(t, l, ctx, "a", 0); !errors.Is(err, context.Canceled) || took != 300*time.Millisecond {
			t.Fatalf("cancelled wait: took %v, %v; want context.Canceled after 300ms", took, err)
		}
		// The abandoned reservation was given back: the next call takes its place.
		mustAdmit(t, l, "a", 0, 700*time.Millisecond)
	})
}

func TestReserveMaxConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limits := map[string]quota.Limits{"a": {MaxConcurrent: 2}}
		l := exactLimiter(t, quota.Config{Limits: limits, MaxWait: time.Second})
		r1 := mustAdmit(t, l, "a", 0, 0)
		r2 := mustAdmit(t, l, "a", 0, 0)
		if l.Available("a") {
			t.Error("Available with every slot held")
		}
		time.AfterFunc(300*time.Millisecond, func() { r1.Settle(0) })
		r3 := mustAdmit(t, l, "a", 0, 300*time.Millisecond)

		_, took, err := reserve(t, l, context.Background(), "a", 0)
		var qe *quota.Error
		if !errors.As(err, &qe) || qe.Kind != quota.Concurrent || took != time.Second {
			t.Fatalf("third call with two slots held: took %v, %v; want refused by Concurrent after MaxWait", took, err)
		}
		r2.Cancel()
		r3.Settle(0)
		r3.Settle(0) // a second end does nothing
		mustAdmit(t, l, "a", 0, 0)
		mustAdmit(t, l, "a", 0, 0).Cancel()

		refuse := exactLimiter(t, quota.Config{Limits: limits, MaxWait: quota.NoWait})
		mustAdmit(t, refuse, "a", 0, 0)
		mustAdmit(t, refuse, "a", 0, 0)
		mustRefuse(t, refuse, context.Background(), "a", 0, quota.Concurrent, 0)
	})
}

func TestSettleTruesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limits := map[string]quota.Limits{"a": {TokensPerMinute: 6000}} // 100 per second
		l := exactLimiter(t, quota.Config{Limits: limits, MaxWait: quota.NoWait})

		r := mustAdmit(t, l, "a", 1000, 0)
		r.Settle(100)                            // 900 given back
		mustAdmit(t, l, "a", 5900, 0).Settle(-1) // unknown usage: the estimate stands
		mustRefuse(t, l, context.Background(), "a", 100, quota.Tokens, time.Second)

		time.Sleep(time.Minute)
		r = mustAdmit(t, l, "a", 100, 0)
		r.Settle(1000) // 900 more taken
		r.Settle(0)    // ignored: already settled
		mustAdmit(t, l, "a", 5000, 0)
		mustRefuse(t, l, context.Background(), "a", 100, quota.Tokens, time.Second)
	})
}

func TestCancelGivesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limits := map[string]quota.Limits{"a": {RequestsPerMinute: 1, TokensPerMinute: 100}}
		l := exactLimiter(t, quota.Config{Limits: limits, MaxWait: quota.NoWait})
		mustAdmit(t, l, "a", 100, 0).Cancel()
		r := mustAdmit(t, l, "a", 100, 0)
		mustRefuse(t, l, context.Background(), "a", 0, quota.Requests, time.Minute)
		r.Cancel()
		r.Settle(100) // ignored: already cancelled
		mustAdmit(t, l, "a", 100, 0)
	})
}

func TestReserveNegativeTokens(t *testing.T) {
	l := exactLimiter(t, quota.Config{})
	_, err := l.Reserve(context.Background(), "a", -1)
	if err == nil || errors.Is(err, quota.ErrQuota) {
		t.Fatalf("Reserve(-1): %v, want an error that is not ErrQuota", err)
	}
}

func ratelimitHeader(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestObserveTightensUntilReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limits := map[string]quota.Limits{"a": {RequestsPerMinute: 600, TokensPerMinute: 60000}}
		l := exactLimiter(t, quota.Config{Limits: limits, MaxWait: quota.NoWait})
		mustAdmit(t, l, "a", 100, 0).Settle(100)
		// Another client of the same organisation used almost everything.
		l.Observe("a", ratelimitHeader(
			"x-ratelimit-remaining-requests", "0", "x-ratelimit-reset-requests", "1m0s",
			"x-ratelimit-remaining-tokens", "500", "x-ratelimit-reset-tokens", "59.5s"), http.StatusOK)
		mustRefuse(t, l, context.Background(), "a", 0, quota.Requests, 100*time.Millisecond)
		if l.Available("a") {
			t.Error("Available with no request left")
		}
		time.Sleep(100 * time.Millisecond)
		if !l.Available("a") {
			t.Error("not Available after one request's refill")
		}
		mustAdmit(t, l, "a", 600, 0) // 500 + 100 refilled
		mustRefuse(t, l, context.Background(), "a", 1000, quota.Tokens, time.Second)

		// By the reset the view is full again, as the provider's limit is.
		time.Sleep(time.Minute)
		for range 600 {
			mustAdmit(t, l, "a", 100, 0)
		}
		mustRefuse(t, l, context.Background(), "a", 0, quota.Requests, 100*time.Millisecond)
	})
}

func TestObserveLearnsLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var learned []quota.Learned
		l := exactLimiter(t, quota.Config{MaxWait: quota.NoWait, Hooks: quota.Hooks{
			Learned: func(key string, ld quota.Learned) { learned = append(learned, ld) },
		}})
		for range 1000 {
			mustAdmit(t, l, "a", 0, 0) // nothing known yet: no limit
		}
		l.Observe("a", ratelimitHeader("x-ratelimit-limit-requests", "120", "x-ratelimit-remaining-requests", "1",
			"x-ratelimit-reset-requests", "29.5s"), http.StatusOK)
		mustAdmit(t, l, "a", 0, 0)
		mustRefuse(t, l, context.Background(), "a", 0, quota.Requests, 500*time.Millisecond)
		l.Observe("a", http.Header{"Content-Type": {"application/json"}}, http.StatusOK) // says nothing
		want := quota.Learned{LimitRequests: 120, LimitTokens: -1, RemainingRequests: 1, RemainingTokens: -1,
			ResetRequests: 29500 * time.Millisecond, ResetTokens: -1, RetryAfter: -1}
		if len(learned) != 1 || learned[0] != want {
			t.Fatalf("Learned hook got %+v, want once %+v", learned, want)
		}

		// A configured limit stays when the provider's is higher.
		c := exactLimiter(t, quota.Config{Limits: map[string]quota.Limits{"a": {RequestsPerMinute: 60}}, MaxWait: quota.NoWait})
		c.Observe("a", ratelimitHeader("x-ratelimit-limit-requests", "6000"), http.StatusOK)
		for range 60 {
			mustAdmit(t, c, "a", 0, 0)
		}
		mustRefuse(t, c, context.Background(), "a", 0, quota.Requests, time.Second)
	})
}

func TestObserveExhaustedWithoutLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := exactLimiter(t, quota.Config{MaxWait: quota.NoWait})
		l.Observe("a", ratelimitHeader("x-ratelimit-remaining-tokens", "0", "x-ratelimit-reset-tokens", "2s"), http.StatusOK)
		mustRefuse(t, l, context.Background(), "a", 10, quota.Exhausted, 2*time.Second)
		time.Sleep(2 * time.Second)
		mustAdmit(t, l, "a", 10, 0)
	})
}

func TestObserveRetryAfterBlocksEveryCaller(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
	}{
		{"seconds", ratelimitHeader("Retry-After", "3")},
		{"milliseconds", ratelimitHeader("retry-after-ms", "3000")},
		{"date", ratelimitHeader("Retry-After", time.Date(2000, 1, 1, 0, 0, 3, 0, time.UTC).Format(http.TimeFormat))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// The bubble's clock starts at 2000-01-01 00:00:00 UTC, so the date is 3s ahead.
				l := exactLimiter(t, quota.Config{})
				l.Observe("a", tc.h, http.StatusOK) // not a 429: no exhaustion
				mustAdmit(t, l, "a", 0, 0)
				l.Observe("a", tc.h, http.StatusTooManyRequests)
				if l.Available("a") {
					t.Error("Available after a 429")
				}
				var wg sync.WaitGroup
				for range 5 {
					wg.Go(func() { mustAdmit(t, l, "a", 0, 3*time.Second) })
				}
				wg.Wait()
				mustAdmit(t, l, "b", 0, 0) // another key is not affected
			})
		})
	}
	synctest.Test(t, func(t *testing.T) {
		l := exactLimiter(t, quota.Config{MaxWait: time.Second})
		l.Observe("a", ratelimitHeader("Retry-After", "3"), http.StatusTooManyRequests)
		mustRefuse(t, l, context.Background(), "a", 0, quota.Exhausted, 3*time.Second)
	})
}

func TestAvailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := exactLimiter(t, quota.Config{Limits: map[string]quota.Limits{"a": {RequestsPerMinute: 1, TokensPerMinute: 600}}})
		if !l.Available("a") || !l.Available("unknown") {
			t.Fatal("not Available before any call")
		}
		r := mustAdmit(t, l, "a", 10, 0)
		if l.Available("a") {
			t.Error("Available with no request left")
		}
		r.Cancel()
		if !l.Available("a") {
			t.Error("not Available after Cancel")
		}
	})
}

func TestHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type admitted struct {
			key    string
			waited time.Duration
			shared bool
		}
		var got []admitted
		var refused []quota.Error
		var settled [][2]int
		l := exactLimiter(t, quota.Config{
			Limits: map[string]quota.Limits{"a": {RequestsPerMinute: 60}},
			Hooks: quota.Hooks{
				Admitted: func(key string, waited time.Duration, shared bool) { got = append(got, admitted{key, waited, shared}) },
				Refused:  func(err *quota.Error) { refused = append(refused, *err) },
				Settled:  func(key string, reserved, actual int) { settled = append(settled, [2]int{reserved, actual}) },
			},
		})
		for range 60 {
			mustAdmit(t, l, "a", 0, 0)
		}
		mustAdmit(t, l, "a", 7, time.Second).Settle(5)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		mustRefuse(t, l, ctx, "a", 0, quota.Requests, time.Second)
		if len(got) != 61 || got[60] != (admitted{"a", time.Second, false}) {
			t.Errorf("Admitted: %d calls, last %+v", len(got), got[len(got)-1])
		}
		if len(refused) != 1 || refused[0] != (quota.Error{Key: "a", Kind: quota.Requests, Wait: time.Second}) {
			t.Errorf("Refused: %+v", refused)
		}
		if len(settled) != 1 || settled[0] != [2]int{7, 5} {
			t.Errorf("Settled: %v", settled)
		}
	})
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		c     quota.Config
		field string
	}{
		{quota.Config{Window: -time.Second}, "Config.Window"},
		{quota.Config{MaxWait: -2 * time.Second}, "Config.MaxWait"},
		{quota.Config{RedisTimeout: -1}, "Config.RedisTimeout"},
		{quota.Config{Limits: map[string]quota.Limits{"ok": {}, "b": {TokensPerMinute: -1}}}, `Config.Limits["b"].TokensPerMinute`},
		{quota.Config{Limits: map[string]quota.Limits{"c": {RequestsPerMinute: -1}}}, `Config.Limits["c"].RequestsPerMinute`},
		{quota.Config{Limits: map[string]quota.Limits{"d": {MaxConcurrent: -1}}}, `Config.Limits["d"].MaxConcurrent`},
	} {
		_, err := quota.New(tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("New(%+v): %v, want an error naming %s", tc.c, err, tc.field)
		}
	}
	if _, err := quota.New(quota.Config{MaxWait: quota.NoWait}); err != nil {
		t.Errorf("New with NoWait: %v", err)
	}
}

func TestErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		err  quota.Error
		want string
	}{
		{quota.Error{Key: "gpt-4o", Kind: quota.Tokens, Wait: 1500 * time.Millisecond},
			`quota: "gpt-4o": tokens per minute: admission needs 1.5s, more than the call may wait`},
		{quota.Error{Key: "a", Kind: quota.Concurrent},
			`quota: "a": concurrent calls: no room within the wait the call may spend`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}
