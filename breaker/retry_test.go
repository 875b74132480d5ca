package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

// hintError is an error with a verdict of its own (a Verdicter).
type hintError struct{ v breaker.Verdict }

func (e *hintError) Error() string                   { return "upstream says " + string(e.v.Class) }
func (e *hintError) BreakerVerdict() breaker.Verdict { return e.v }

func retryable(hint time.Duration, s breaker.Signals) error {
	return &hintError{breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassRateLimited, RetryAfter: hint, Signals: s}}
}

// recorder collects OnRetry events.
type recorder struct {
	mu     sync.Mutex
	events []breaker.RetryEvent
}

func (r *recorder) onRetry(_ context.Context, e breaker.RetryEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) waits() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var w []time.Duration
	for _, e := range r.events {
		w = append(w, e.Wait)
	}
	return w
}

// attempts runs Do with fn returning errs[i] (and value i+1) on attempt i+1;
// it returns Do's results and the start time of each attempt, relative to the
// start of the call.
func attempts(ctx context.Context, p *breaker.Policy, errs ...error) (int, error, []time.Duration) {
	start := time.Now()
	var starts []time.Duration
	v, err := breaker.Do(ctx, p, func(context.Context) (int, error) {
		n := len(starts)
		starts = append(starts, time.Since(start))
		if n < len(errs) {
			return n + 1, errs[n]
		}
		return n + 1, nil
	})
	return v, err, starts
}

func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{MaxAttempts: 3, MinimumCalls: 100})
		v, err, starts := attempts(context.Background(), p, errBoom, errBoom, fmt.Errorf("third: %w", errBoom))
		if len(starts) != 3 {
			t.Fatalf("%d attempts, want 3", len(starts))
		}
		if v != 3 {
			t.Errorf("value %d, want the last attempt's (3)", v)
		}
		if got, want := err.Error(), "breaker: 3 attempts: third: boom"; got != want {
			t.Errorf("error %q, want %q", got, want)
		}
		if !errors.Is(err, errBoom) || !errors.Is(err, breaker.ErrRetriesExhausted) {
			t.Errorf("errors.Is fails on %v", err)
		}
		be := asError(t, err)
		if be.Attempts != 3 || be.Reason != breaker.ErrRetriesExhausted || be.Verdict.Class != breaker.ClassUnknown || !be.Verdict.Retryable {
			t.Errorf("error %+v", be)
		}
	})
}

func TestRetryThenSuccess(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{})
		v, err, starts := attempts(context.Background(), p, errBoom)
		if err != nil || v != 2 || len(starts) != 2 {
			t.Fatalf("value %d, err %v, %d attempts", v, err, len(starts))
		}
		if starts[1] > 2*time.Second {
			t.Errorf("first retry after %v, want at most Backoff.Initial (2s)", starts[1])
		}
	})
}

func TestNotRetryable(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breaker.Config{MaxAttempts: 5, Classifier: testClassifier})
	_, err, starts := attempts(context.Background(), p, errStop)
	if len(starts) != 1 {
		t.Fatalf("%d attempts, want 1", len(starts))
	}
	if got, want := err.Error(), "breaker: 1 attempt: stop"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	if !errors.Is(err, breaker.ErrNotRetryable) || !errors.Is(err, errStop) {
		t.Errorf("errors.Is fails on %v", err)
	}
}

func TestExcludedIsNotRetriedByDefault(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breaker.Config{MaxAttempts: 5, Classifier: testClassifier})
	_, err, starts := attempts(context.Background(), p, errBad)
	if len(starts) != 1 || !errors.Is(err, breaker.ErrNotRetryable) {
		t.Fatalf("%d attempts, err %v", len(starts), err)
	}
}

func TestCallerCancellationNotRetried(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breaker.Config{MaxAttempts: 5, Timeout: breaker.NoTimeout})
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := breaker.Do(ctx, p, func(ctx context.Context) (int, error) {
		n++
		cancel()
		return 0, ctx.Err()
	})
	if n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	be := asError(t, err)
	if be.Reason != context.Canceled || !errors.Is(err, context.Canceled) {
		t.Errorf("error %+v", be)
	}
}

func TestCallerCancellationDuringWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{MaxAttempts: 5, Backoff: breaker.Backoff{Initial: 10 * time.Second, Max: 10 * time.Second}})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		_, err, starts := attempts(ctx, p, retryable(5*time.Second, breaker.Signals{}))
		if len(starts) != 1 {
			t.Fatalf("%d attempts", len(starts))
		}
		if time.Since(start) != time.Second || !errors.Is(err, context.Canceled) {
			t.Fatalf("returned after %v with %v; want at the cancellation (1s) with context.Canceled", time.Since(start), err)
		}
		if be := asError(t, err); be.Reason != context.Canceled || be.Attempts != 1 {
			t.Errorf("error %+v", be)
		}
	})
}

func TestBackoffFullJitter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		p := mustNew(t, breaker.Config{
			MaxAttempts: 6, MinimumCalls: 100, Timeout: breaker.NoTimeout,
			Backoff: breaker.Backoff{Initial: time.Second, Max: 4 * time.Second, Multiplier: 2},
			Hooks:   breaker.Hooks{OnRetry: rec.onRetry},
		})
		_, _, starts := attempts(context.Background(), p, errBoom, errBoom, errBoom, errBoom, errBoom, errBoom)
		waits := rec.waits()
		intervals := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
		if len(waits) != len(intervals) || len(starts) != 6 {
			t.Fatalf("waits %v, starts %v", waits, starts)
		}
		for i, w := range waits {
			if w < 0 || w > intervals[i] {
				t.Errorf("wait %d is %v, want within [0, %v]", i+1, w, intervals[i])
			}
			// The attempt starts exactly when the wait ends.
			if got := starts[i+1] - starts[i]; got != w {
				t.Errorf("attempt %d started %v after the previous, want the wait %v", i+2, got, w)
			}
		}
	})
}

func TestBackoffIsJittered(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		p := mustNew(t, breaker.Config{MinimumCalls: 1000, WindowSize: 1000, Hooks: breaker.Hooks{OnRetry: rec.onRetry}})
		for range 40 {
			attempts(context.Background(), p, errBoom)
		}
		waits := rec.waits()
		distinct := map[time.Duration]bool{}
		var sum time.Duration
		for _, w := range waits {
			if w < 0 || w > 2*time.Second {
				t.Fatalf("wait %v outside [0, 2s]", w)
			}
			distinct[w] = true
			sum += w
		}
		if len(distinct) < 30 {
			t.Errorf("%d distinct waits in 40: not jittered", len(distinct))
		}
		if mean := sum / time.Duration(len(waits)); mean < 500*time.Millisecond || mean > 1500*time.Millisecond {
			t.Errorf("mean wait %v, want about 1s (uniform over [0, 2s])", mean)
		}
	})
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{Backoff: breaker.Backoff{Initial: time.Second}})
		_, err, starts := attempts(context.Background(), p, retryable(5*time.Second, breaker.Signals{}))
		if err != nil || len(starts) != 2 {
			t.Fatalf("err %v, %d attempts", err, len(starts))
		}
		if starts[1] != 5*time.Second {
			t.Errorf("retry after %v, want the hint, 5s (> backoff 1s)", starts[1])
		}
	})
}

func TestRetryAfterAtCapIsHonoured(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{MaxRetryAfter: 10 * time.Second})
		_, err, starts := attempts(context.Background(), p, retryable(10*time.Second, breaker.Signals{}))
		if err != nil || len(starts) != 2 || starts[1] != 10*time.Second {
			t.Fatalf("err %v, starts %v", err, starts)
		}
	})
}

func TestRetryAfterTooLong(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{})
		start := time.Now()
		_, err, starts := attempts(context.Background(), p, retryable(61*time.Second, breaker.Signals{}))
		if len(starts) != 1 || time.Since(start) != 0 {
			t.Fatalf("%d attempts, took %v", len(starts), time.Since(start))
		}
		be := asError(t, err)
		if be.Reason != breaker.ErrRetryAfterTooLong || be.RetryAfter != 61*time.Second || !errors.Is(err, breaker.ErrRetryAfterTooLong) {
			t.Errorf("error %+v", be)
		}
		if got, want := err.Error(), "breaker: 1 attempt (retry-after exceeds MaxRetryAfter: 1m1s): upstream says rate_limited"; got != want {
			t.Errorf("error %q, want %q", got, want)
		}
	})
}

func TestDeadlineTooShortForHint(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		_, err, starts := attempts(ctx, p, retryable(5*time.Second, breaker.Signals{}))
		if len(starts) != 1 || time.Since(start) != 0 {
			t.Fatalf("%d attempts, took %v: slept toward a deadline it cannot meet", len(starts), time.Since(start))
		}
		if be := asError(t, err); be.Reason != breaker.ErrDeadlineTooShort || be.RetryAfter != 5*time.Second {
			t.Errorf("error %+v", be)
		}
	})
}

// The overall Timeout counts as a deadline; the wait plus MinTryTime (or the
// PerTryTimeout when shorter) must end by it.
func TestDeadlineFitting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		c         breaker.Config
		hint      time.Duration
		wantRetry bool
	}{
		{"fits exactly", breaker.Config{Timeout: 10 * time.Second}, 9900 * time.Millisecond, true},
		{"one nanosecond over", breaker.Config{Timeout: 10 * time.Second}, 9900*time.Millisecond + 1, false},
		{"min try time", breaker.Config{Timeout: 10 * time.Second, MinTryTime: time.Second}, 9 * time.Second, true},
		{"min try time over", breaker.Config{Timeout: 10 * time.Second, MinTryTime: time.Second}, 9*time.Second + 1, false},
		{"per-try timeout shorter", breaker.Config{Timeout: 10 * time.Second, PerTryTimeout: 50 * time.Millisecond}, 9950 * time.Millisecond, true},
		{"no deadline", breaker.Config{Timeout: breaker.NoTimeout}, 60 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				p := mustNew(t, tt.c)
				_, err, starts := attempts(context.Background(), p, retryable(tt.hint, breaker.Signals{}))
				if tt.wantRetry {
					if err != nil || len(starts) != 2 || starts[1] != tt.hint {
						t.Fatalf("err %v, starts %v", err, starts)
					}
					return
				}
				if len(starts) != 1 || !errors.Is(err, breaker.ErrDeadlineTooShort) {
					t.Fatalf("err %v, starts %v", err, starts)
				}
			})
		})
	}
}

func TestMeshRetriedNotRetried(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breaker.Config{MaxAttempts: 5})
	_, err, starts := attempts(context.Background(), p, retryable(0, breaker.Signals{MeshRetried: true}))
	if len(starts) != 1 || !errors.Is(err, breaker.ErrMeshRetried) {
		t.Fatalf("%d attempts, err %v", len(starts), err)
	}
}

func TestNoHealthyUpstreamFailsAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{MaxAttempts: 5})
		start := time.Now()
		_, err, starts := attempts(context.Background(), p, retryable(time.Second, breaker.Signals{NoHealthyUpstream: true}))
		if len(starts) != 1 || time.Since(start) != 0 || !errors.Is(err, breaker.ErrNoHealthyUpstream) {
			t.Fatalf("%d attempts in %v, err %v", len(starts), time.Since(start), err)
		}
		if got, want := err.Error(), "breaker: 1 attempt (no healthy upstream): upstream says rate_limited"; got != want {
			t.Errorf("error %q, want %q", got, want)
		}
	})
}

func TestOverloadedWaitsAtLeastHintAndInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{Backoff: breaker.Backoff{Initial: 4 * time.Second}})
		_, err, starts := attempts(context.Background(), p, retryable(time.Second, breaker.Signals{Overloaded: true}))
		if err != nil || len(starts) != 2 || starts[1] != 4*time.Second {
			t.Fatalf("err %v, starts %v: want the full interval, 4s", err, starts)
		}
		_, err, starts = attempts(context.Background(), p, retryable(6*time.Second, breaker.Signals{Overloaded: true}))
		if err != nil || len(starts) != 2 || starts[1] != 6*time.Second {
			t.Fatalf("err %v, starts %v: want the hint, 6s", err, starts)
		}
	})
}

// Ten calls fail at the same moment; a 20% budget of ten calls in flight
// admits two retries and refuses the other eight, which fail with their own
// error.
func TestRetryBudget(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var rejected atomic.Int32
		p := mustNew(t, breaker.Config{
			BudgetPercent: 20, MinRetryConcurrency: 1, MinimumCalls: 100, WindowSize: 100,
			Hooks: breaker.Hooks{OnBudgetRejected: func(_ context.Context, e breaker.RetryEvent) {
				if e.Attempt != 1 || !errors.Is(e.Err, errBoom) {
					t.Errorf("budget event %+v", e)
				}
				rejected.Add(1)
			}},
		})
		var wg sync.WaitGroup
		var retried, exhausted atomic.Int32
		for range 10 {
			wg.Go(func() {
				n := 0
				_, err := breaker.Do(context.Background(), p, func(context.Context) (int, error) {
					n++
					if n == 1 {
						time.Sleep(time.Second)
						return 0, errBoom
					}
					return 0, nil
				})
				switch {
				case err == nil && n == 2:
					retried.Add(1)
				case errors.Is(err, breaker.ErrBudgetExhausted) && errors.Is(err, errBoom) && n == 1:
					exhausted.Add(1)
				default:
					t.Errorf("%d attempts, err %v", n, err)
				}
			})
		}
		wg.Wait()
		if retried.Load() != 2 || exhausted.Load() != 8 || rejected.Load() != 8 {
			t.Errorf("retried %d, exhausted %d, hook %d; want 2, 8, 8", retried.Load(), exhausted.Load(), rejected.Load())
		}
	})
}

func TestRetryBudgetFloor(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// 1% of 3 calls is 0 retries, but MinRetryConcurrency (default 3) allows 3.
		p := mustNew(t, breaker.Config{BudgetPercent: 1, MinimumCalls: 100, WindowSize: 100})
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				_, err, starts := attempts(context.Background(), p, errBoom)
				if err != nil || len(starts) != 2 {
					t.Errorf("err %v, %d attempts", err, len(starts))
				}
			})
		}
		wg.Wait()
	})
}

// Under real concurrency (and -race), no more calls are ever retrying at once
// than the budget allows.
func TestRetryBudgetConcurrent(t *testing.T) {
	t.Parallel()
	const workers = 8
	p := mustNew(t, breaker.Config{
		BudgetPercent: 25, MinRetryConcurrency: 1, MaxAttempts: 3, MinimumCalls: 1 << 20, WindowSize: 1 << 20,
		Backoff: breaker.Backoff{Initial: time.Microsecond, Max: time.Microsecond},
	})
	var inRetry, maxInRetry atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range 30 {
				n := 0
				breaker.Do(context.Background(), p, func(context.Context) (int, error) {
					n++
					if n > 1 {
						cur := inRetry.Add(1)
						for {
							m := maxInRetry.Load()
							if cur <= m || maxInRetry.CompareAndSwap(m, cur) {
								break
							}
						}
						time.Sleep(50 * time.Microsecond)
						inRetry.Add(-1)
					}
					if (w+i+n)%3 == 0 {
						return n, nil
					}
					return n, errBoom
				})
			}
		})
	}
	wg.Wait()
	if m := maxInRetry.Load(); m > workers*25/100 {
		t.Errorf("%d calls retrying at once, budget allows at most %d", m, workers*25/100)
	}
}
