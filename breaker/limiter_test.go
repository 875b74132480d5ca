package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

// stubborn ignores its ctx: it takes d whatever happens.
func stubborn(d time.Duration, done *atomic.Bool) func(context.Context) (int, error) {
	return func(context.Context) (int, error) {
		time.Sleep(d)
		if done != nil {
			done.Store(true)
		}
		return 42, nil
	}
}

func TestPerTryTimeoutReturnsWhenFnIgnoresCtx(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{PerTryTimeout: time.Second, MaxAttempts: 1})
		var done atomic.Bool
		start := time.Now()
		v, err := breaker.Do(context.Background(), p, stubborn(10*time.Second, &done))
		if time.Since(start) != time.Second {
			t.Fatalf("Do returned after %v, want at the per-try deadline, 1s", time.Since(start))
		}
		if v != 0 {
			t.Errorf("value %d from an abandoned attempt, want 0", v)
		}
		if !errors.Is(err, breaker.ErrPerTryTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want ErrPerTryTimeout wrapping context.DeadlineExceeded", err)
		}
		be := asError(t, err)
		if be.Verdict.Class != breaker.ClassTimeout || be.Verdict.Outcome != breaker.OutcomeFailure || !be.Verdict.Retryable {
			t.Errorf("verdict %+v, want a retryable timeout failure", be.Verdict)
		}
		if got, want := err.Error(), "breaker: 1 attempt: breaker: per-try timeout: context deadline exceeded"; got != want {
			t.Errorf("error %q, want %q", got, want)
		}
		// The abandoned goroutine finishes on its own.
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if !done.Load() {
			t.Error("the abandoned fn did not finish")
		}
	})
}

func TestOverallTimeoutReturnsWhenFnIgnoresCtx(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{MaxAttempts: 3})
		start := time.Now()
		_, err := breaker.Do(context.Background(), p, stubborn(200*time.Second, nil))
		if time.Since(start) != 120*time.Second {
			t.Fatalf("Do returned after %v, want at the default Timeout, 120s", time.Since(start))
		}
		be := asError(t, err)
		if be.Reason != breaker.ErrTimeout || be.Last != breaker.ErrTimeout || be.Attempts != 1 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %+v", be)
		}
		time.Sleep(80 * time.Second) // the abandoned fn finishes
	})
}

func TestPerTryTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{PerTryTimeout: time.Second, Backoff: breaker.Backoff{Initial: time.Millisecond}})
		var n atomic.Int32 // attempts overlap: the first is abandoned, not stopped
		start := time.Now()
		v, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
			k := int(n.Add(1))
			if k == 1 {
				time.Sleep(time.Hour) // ignores ctx
			}
			return k, nil
		})
		if err != nil || v != 2 {
			t.Fatalf("value %d, err %v", v, err)
		}
		if el := time.Since(start); el < time.Second || el > time.Second+time.Millisecond {
			t.Errorf("took %v, want 1s plus a wait of at most 1ms", el)
		}
		time.Sleep(time.Hour) // the abandoned fn finishes
	})
}

func TestAttemptDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		check := func(c breaker.Config, ctx context.Context, want time.Duration, wantOK bool) {
			t.Helper()
			p := mustNew(t, c)
			start := time.Now()
			breaker.Do(ctx, p, func(ctx context.Context) (int, error) {
				d, ok := ctx.Deadline()
				if ok != wantOK || (ok && d.Sub(start) != want) {
					t.Errorf("attempt deadline in %v (%v), want %v (%v)", d.Sub(start), ok, want, wantOK)
				}
				return 0, nil
			})
		}
		bg := context.Background()
		check(breaker.Config{}, bg, 120*time.Second, true)
		check(breaker.Config{PerTryTimeout: time.Second}, bg, time.Second, true)
		check(breaker.Config{Timeout: time.Second, PerTryTimeout: time.Minute}, bg, time.Second, true)
		check(breaker.Config{Timeout: breaker.NoTimeout}, bg, 0, false)
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		check(breaker.Config{}, ctx, 5*time.Second, true)
	})
}

func TestCallerCancelWhileFnIgnoresCtx(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{MinimumCalls: 1})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		_, err := breaker.Do(ctx, p, stubborn(time.Minute, nil))
		if time.Since(start) != time.Second || !errors.Is(err, context.Canceled) {
			t.Fatalf("after %v: %v; want context.Canceled at 1s", time.Since(start), err)
		}
		if v := asError(t, err).Verdict; v.Outcome != breaker.OutcomeExcluded {
			t.Errorf("verdict %+v, want excluded", v)
		}
		wantState(t, p, breaker.StateClosed) // MinimumCalls 1: a failure would have opened it
		time.Sleep(time.Minute)
	})
}

func TestNoTimeoutRunsFnInline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{Timeout: breaker.NoTimeout})
		start := time.Now()
		v, err := breaker.Do(context.Background(), p, stubborn(time.Hour, nil))
		if err != nil || v != 42 || time.Since(start) != time.Hour {
			t.Fatalf("value %d, err %v, after %v", v, err, time.Since(start))
		}
	})
}

// Each attempt's ctx is cancelled when the attempt ends; the last one's when
// Do returns.
func TestAttemptCtxCancelledWhenAttemptEnds(t *testing.T) {
	t.Parallel()
	for _, c := range []breaker.Config{
		{Timeout: breaker.NoTimeout, MaxAttempts: 3},
		{PerTryTimeout: time.Minute, MaxAttempts: 3},
	} {
		synctest.Test(t, func(t *testing.T) {
			p := mustNew(t, c)
			var ctxs []context.Context
			_, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
				for i, prev := range ctxs {
					if prev.Err() == nil {
						t.Errorf("attempt %d's ctx still live during attempt %d", i+1, len(ctxs)+1)
					}
				}
				if ctx.Err() != nil {
					t.Errorf("attempt %d starts with a done ctx", len(ctxs)+1)
				}
				ctxs = append(ctxs, ctx)
				return 0, errBoom
			})
			if !errors.Is(err, errBoom) || len(ctxs) != 3 {
				t.Fatalf("err %v, %d attempts", err, len(ctxs))
			}
			if ctxs[2].Err() == nil {
				t.Error("the last attempt's ctx is live after Do returned")
			}
		})
	}
}

func TestWithOverrides(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{Timeout: 5 * time.Second, MaxAttempts: 2, Backoff: breaker.Backoff{Initial: time.Millisecond}, MinimumCalls: 100})

		// A stream: per-try = first-token timeout, no overall timeout.
		ctx := breaker.WithOverrides(context.Background(), breaker.Overrides{PerTryTimeout: time.Second, Timeout: breaker.NoTimeout, MaxAttempts: 3})
		start := time.Now()
		var n atomic.Int32
		_, err := breaker.Do(ctx, p, func(ctx context.Context) (int, error) {
			k := n.Add(1)
			if d, _ := ctx.Deadline(); time.Until(d) != time.Second {
				t.Errorf("attempt %d: deadline in %v, want 1s", k, time.Until(d))
			}
			time.Sleep(2 * time.Second) // ignores ctx
			return 0, nil
		})
		if n.Load() != 3 || !errors.Is(err, breaker.ErrPerTryTimeout) {
			t.Fatalf("%d attempts, err %v; want 3 per-try timeouts", n.Load(), err)
		}
		if el := time.Since(start); el < 3*time.Second || el > 3*time.Second+3*time.Millisecond { // waits of at most 1ms and 2ms
			t.Errorf("took %v", el)
		}

		// No time limit at all: a 10s call outlives the policy's 5s Timeout.
		ctx = breaker.WithOverrides(context.Background(), breaker.Overrides{Timeout: breaker.NoTimeout})
		if v, err := breaker.Do(ctx, p, stubborn(10*time.Second, nil)); err != nil || v != 42 {
			t.Fatalf("value %d, err %v", v, err)
		}

		// A negative MaxAttempts means one attempt; zero keeps the policy's.
		for _, tt := range []struct{ max, want int }{{-1, 1}, {0, 2}, {4, 4}} {
			ctx = breaker.WithOverrides(context.Background(), breaker.Overrides{MaxAttempts: tt.max})
			_, _, starts := attempts(ctx, p, errBoom, errBoom, errBoom, errBoom, errBoom)
			if len(starts) != tt.want {
				t.Errorf("MaxAttempts override %d: %d attempts, want %d", tt.max, len(starts), tt.want)
			}
		}
		time.Sleep(time.Minute) // let the abandoned attempts finish
	})
}

func TestPanicPropagates(t *testing.T) {
	t.Parallel()
	for _, c := range []breaker.Config{
		{Timeout: breaker.NoTimeout, MinimumCalls: 1},
		{PerTryTimeout: time.Second, MinimumCalls: 1},
	} {
		synctest.Test(t, func(t *testing.T) {
			p := mustNew(t, c)
			func() {
				defer func() {
					if r := recover(); r != "kaboom" {
						t.Errorf("recovered %v, want kaboom", r)
					}
				}()
				breaker.Do(context.Background(), p, func(context.Context) (int, error) { panic("kaboom") })
				t.Error("Do returned")
			}()
			wantState(t, p, breaker.StateOpen) // the panic counted as a failure
		})
	}
}

// Under real concurrency, with attempts abandoned at random, every call gets
// its own attempt's value, never another call's.
func TestTimeLimiterStress(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breaker.Config{
		PerTryTimeout: time.Millisecond, MaxAttempts: 2, MinimumCalls: 1 << 20, WindowSize: 1 << 20,
		Backoff: breaker.Backoff{Initial: time.Microsecond, Max: time.Microsecond}, BudgetPercent: 100,
	})
	var wg sync.WaitGroup
	var ok, timedOut atomic.Int32
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				id := w*1000 + i
				v, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
					time.Sleep(time.Duration((id*37)%20) * 100 * time.Microsecond)
					return id, nil
				})
				switch {
				case err == nil && v == id:
					ok.Add(1)
				case errors.Is(err, breaker.ErrPerTryTimeout) && v == 0:
					timedOut.Add(1)
				default:
					t.Errorf("call %d: value %d, err %v", id, v, err)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() == 0 {
		t.Errorf("no call succeeded (%d timed out)", timedOut.Load())
	}
	time.Sleep(3 * time.Millisecond) // abandoned attempts finish
}

// TestAttemptCtxLikeWithDeadline: the attempt's ctx behaves as a
// context.WithDeadlineCause ctx: Done closes at the deadline, Err is
// DeadlineExceeded, the cause names the limit, and contexts derived from it end
// with it.
func TestAttemptCtxLikeWithDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			c     breaker.Config
			cause error
		}{
			{"per-try", breaker.Config{PerTryTimeout: time.Second, MaxAttempts: 1}, breaker.ErrPerTryTimeout},
			{"overall", breaker.Config{Timeout: time.Second, MaxAttempts: 1}, breaker.ErrTimeout},
		} {
			p := mustNew(t, tc.c)
			start := time.Now()
			_, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
				child, cancel := context.WithCancel(ctx)
				defer cancel()
				if ctx.Err() != nil || child.Err() != nil {
					t.Errorf("%s: ctx ended before its deadline: %v, %v", tc.name, ctx.Err(), child.Err())
				}
				<-child.Done()
				if el := time.Since(start); el != time.Second {
					t.Errorf("%s: derived ctx ended after %v, want 1s", tc.name, el)
				}
				if ctx.Err() != context.DeadlineExceeded {
					t.Errorf("%s: ctx.Err() = %v, want context.DeadlineExceeded", tc.name, ctx.Err())
				}
				if c := context.Cause(ctx); c != tc.cause {
					t.Errorf("%s: context.Cause(ctx) = %v, want %v", tc.name, c, tc.cause)
				}
				if c := context.Cause(child); c != tc.cause {
					t.Errorf("%s: context.Cause(derived) = %v, want %v", tc.name, c, tc.cause)
				}
				return 0, context.Cause(ctx)
			})
			if !errors.Is(err, tc.cause) {
				t.Errorf("%s: err %v, want %v", tc.name, err, tc.cause)
			}
		}

		// The caller's cancellation reaches the attempt's ctx with the
		// caller's cause, not the limiter's.
		p := mustNew(t, breaker.Config{PerTryTimeout: time.Minute})
		why := errors.New("caller gave up")
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(time.Second, func() { cancel(why) })
		breaker.Do(ctx, p, func(actx context.Context) (int, error) {
			<-actx.Done()
			if actx.Err() != context.Canceled || context.Cause(actx) != why {
				t.Errorf("after the caller's cancel: Err %v, Cause %v; want Canceled, %v", actx.Err(), context.Cause(actx), why)
			}
			return 0, actx.Err()
		})
	})
}

// TestAttemptCtxFirstUsedLate: a fn that looks at its ctx only after the
// deadline, or after Do has returned, finds it ended as it would have been.
func TestAttemptCtxFirstUsedLate(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{PerTryTimeout: time.Second, MaxAttempts: 1})
		checked := make(chan struct{})
		_, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
			defer close(checked)
			time.Sleep(2 * time.Second) // ignores ctx past the deadline
			select {
			case <-ctx.Done():
			default:
				t.Error("Done not closed after the deadline")
			}
			if ctx.Err() != context.DeadlineExceeded || context.Cause(ctx) != breaker.ErrPerTryTimeout {
				t.Errorf("late look: Err %v, Cause %v; want DeadlineExceeded, ErrPerTryTimeout", ctx.Err(), context.Cause(ctx))
			}
			return 0, nil
		})
		if !errors.Is(err, breaker.ErrPerTryTimeout) {
			t.Fatalf("err %v, want ErrPerTryTimeout", err)
		}
		<-checked

		var kept context.Context
		if _, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
			kept = ctx // never looked at while the attempt runs
			return 1, nil
		}); err != nil {
			t.Fatal(err)
		}
		if kept.Err() != context.Canceled || context.Cause(kept) != context.Canceled {
			t.Errorf("after Do: Err %v, Cause %v; want Canceled", kept.Err(), context.Cause(kept))
		}
		if d, ok := kept.Deadline(); !ok || d.IsZero() {
			t.Errorf("Deadline() = %v, %v", d, ok)
		}
	})
}

// Contexts derived from the attempt's ctx end as they would under
// context.WithDeadlineCause: with DeadlineExceeded at the limit, so that a fn
// returning a derived context's error is judged a retryable timeout.
func TestAttemptCtxDerivedEndWithDeadlineExceeded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{PerTryTimeout: time.Second, MaxAttempts: 3,
			Backoff: breaker.Backoff{Initial: time.Millisecond, Max: time.Millisecond}})
		attempts := 0
		_, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
			attempts++
			child, cancel := context.WithCancel(ctx)
			defer cancel()
			timed, cancel2 := context.WithTimeout(ctx, time.Hour)
			defer cancel2()
			<-child.Done()
			<-timed.Done()
			if ctx.Err() != context.DeadlineExceeded || child.Err() != context.DeadlineExceeded || timed.Err() != context.DeadlineExceeded {
				t.Errorf("Err: attempt %v, WithCancel child %v, WithTimeout child %v; want DeadlineExceeded for all",
					ctx.Err(), child.Err(), timed.Err())
			}
			if context.Cause(child) != breaker.ErrPerTryTimeout {
				t.Errorf("context.Cause(child) = %v", context.Cause(child))
			}
			return 0, child.Err()
		})
		if attempts != 3 || !errors.Is(err, breaker.ErrRetriesExhausted) {
			t.Errorf("attempts %d, err %v; want 3 attempts, each a retryable timeout", attempts, err)
		}
		time.Sleep(time.Minute)
	})
}

// When the caller cancels at the very instant the per-try limit passes, fn's
// ctx and Do's verdict agree on who ended the attempt: never a per-try timeout
// (a breaker failure) while fn saw the caller's cancellation.
func TestCallerCancelAtTheLimit(t *testing.T) {
	t.Parallel()
	for range 200 {
		synctest.Test(t, func(t *testing.T) {
			p := mustNew(t, breaker.Config{PerTryTimeout: time.Second, MaxAttempts: 2})
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(time.Second, cancel)
			seen := make(chan error, 1)
			release := make(chan struct{})
			_, err := breaker.Do(ctx, p, func(actx context.Context) (int, error) {
				<-actx.Done()
				seen <- context.Cause(actx)
				<-release
				return 0, actx.Err()
			})
			fnSaw := <-seen
			close(release)
			var be *breaker.Error
			if !errors.As(err, &be) {
				t.Fatalf("err %v", err)
			}
			if fnSaw == context.Canceled && errors.Is(be.Last, breaker.ErrPerTryTimeout) {
				t.Errorf("fn saw the caller's cancellation, Do reported a per-try timeout (%v)", err)
			}
			if fnSaw == breaker.ErrPerTryTimeout && !errors.Is(be.Last, breaker.ErrPerTryTimeout) {
				t.Errorf("fn saw the per-try timeout, Do reported %v", err)
			}
			synctest.Wait()
		})
	}
}

// fn calling runtime.Goexit under a time limit ends its attempt at once with an
// error, rather than leaving Do to wait for the deadline.
func TestGoexitInFnEndsAttempt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{PerTryTimeout: time.Minute, MaxAttempts: 1})
		start := time.Now()
		_, err := breaker.Do(context.Background(), p, func(context.Context) (int, error) {
			runtime.Goexit()
			return 0, nil
		})
		if err == nil || errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 0 {
			t.Fatalf("after %v: err %v; want an error at once", time.Since(start), err)
		}
	})
}

// A panic in fn after Do has stopped waiting for it is not swallowed: it ends
// the program, raised on fn's goroutine. The test runs itself in a child
// process, which must die of that panic.
func TestPanicAfterDoReturnedEndsProgram(t *testing.T) {
	if os.Getenv("BREAKER_TEST_LATE_PANIC") == "1" {
		p := mustNew(t, breaker.Config{PerTryTimeout: time.Millisecond, MaxAttempts: 1})
		release := make(chan struct{})
		_, err := breaker.Do(context.Background(), p, func(context.Context) (int, error) {
			<-release
			panic("late kaboom")
		})
		if !errors.Is(err, breaker.ErrPerTryTimeout) {
			fmt.Println("Do returned", err)
			os.Exit(3)
		}
		close(release)
		time.Sleep(time.Minute) // the panic ends the process long before
		os.Exit(4)
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanicAfterDoReturnedEndsProgram$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BREAKER_TEST_LATE_PANIC=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "panic: late kaboom") {
		t.Fatalf("child process: %v, output:\n%s\nwant it to die of the panic (exit status 2)", err, out)
	}
}
