package breaker_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

func TestMinimumCallsBeforeJudging(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breakerOnly(breaker.Config{WindowSize: 10, MinimumCalls: 5}))
	calls(t, p, errBoom, errBoom, errBoom, errBoom)
	wantState(t, p, breaker.StateClosed) // 100% failures, but only 4 calls
	calls(t, p, errBoom)
	wantState(t, p, breaker.StateOpen)
}

// A success that brings the window to MinimumCalls is judged too: Resilience4j
// checks the rates after every recorded call.
func TestSuccessReachingMinimumTrips(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 5}))
	calls(t, p, errBoom, errBoom, errBoom, errBoom)
	wantState(t, p, breaker.StateClosed)
	calls(t, p, nil) // 4 of 5 failed: 80% >= 50%
	wantState(t, p, breaker.StateOpen)
}

func TestFailureRateAtThresholdTrips(t *testing.T) {
	t.Parallel()
	below := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 4}))
	calls(t, below, nil, nil, nil, errBoom) // 25%
	wantState(t, below, breaker.StateClosed)

	at := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 4}))
	calls(t, at, nil, nil, errBoom, errBoom) // exactly 50%
	wantState(t, at, breaker.StateOpen)

	custom := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 3, FailureRate: 66.66}))
	calls(t, custom, nil, errBoom, errBoom) // 66.67% >= 66.66%
	wantState(t, custom, breaker.StateOpen)
}

func TestCountWindowSlides(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breakerOnly(breaker.Config{WindowSize: 4, MinimumCalls: 4}))
	calls(t, p, errBoom, nil, nil, nil) // F S S S: 25%
	wantState(t, p, breaker.StateClosed)
	calls(t, p, errBoom) // the first F leaves: S S S F, 25%
	wantState(t, p, breaker.StateClosed)
	calls(t, p, nil) // S S F S
	wantState(t, p, breaker.StateClosed)
	calls(t, p, errBoom) // S F S F: 50%
	wantState(t, p, breaker.StateOpen)
}

func TestSlowSuccessIsSlowNotFailure(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// FailureRate 50: if slow successes counted as failures, 2 of 4 would trip.
		p := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 4, SlowCallDuration: time.Second}))
		call(p, 2*time.Second, nil)
		call(p, 2*time.Second, nil)
		call(p, 0, nil)
		call(p, 0, nil)
		wantState(t, p, breaker.StateClosed) // slow rate 50% < 100%
	})
}

func TestSlowCallRateTrips(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 4, SlowCallRate: 50, SlowCallDuration: time.Second}))
		call(p, time.Second, nil) // exactly SlowCallDuration: not slow
		call(p, 0, nil)
		call(p, time.Second+time.Nanosecond, nil)
		wantState(t, p, breaker.StateClosed)
		call(p, 0, nil) // 1 slow of 4: 25%
		wantState(t, p, breaker.StateClosed)
		call(p, 3*time.Second, nil) // window 1s,0,1s+1ns,0,3s: 2 of 5 = 40%
		wantState(t, p, breaker.StateClosed)
		call(p, 3*time.Second, nil) // 3 of 6 = 50%
		wantState(t, p, breaker.StateOpen)
	})
}

// A slow failure is a failure and slow: each rate trips independently.
func TestSlowFailureCountsForBothRates(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 4, FailureRate: 75, SlowCallRate: 50, SlowCallDuration: time.Second}))
		call(p, 2*time.Second, errBoom)
		call(p, 2*time.Second, errBoom)
		call(p, 0, nil)
		call(p, 0, nil) // failures 50% < 75%, slow 50% >= 50%
		wantState(t, p, breaker.StateOpen)
	})
}

func TestExcludedCountsAsNeither(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 5}))
	for range 20 {
		calls(t, p, errBad)
	}
	wantState(t, p, breaker.StateClosed)
	calls(t, p, errBoom, errBoom, nil, nil)
	wantState(t, p, breaker.StateClosed) // 4 calls counted: below MinimumCalls
	calls(t, p, errBad, nil)             // 2 of 5 failed: 40%
	wantState(t, p, breaker.StateClosed)
	calls(t, p, errBoom) // 3 of 6: 50%
	wantState(t, p, breaker.StateOpen)
}

func TestCallerCancellationIsExcluded(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 2, Classifier: breaker.DefaultClassifier}))
	for range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := breaker.Do(ctx, p, func(ctx context.Context) (int, error) {
			cancel()
			// Whatever fn makes of it, the caller cancelled.
			return 0, errors.New("connection closed")
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		if v := asError(t, err).Verdict; v.Outcome != breaker.OutcomeExcluded || v.Class != breaker.ClassCanceled || v.Retryable {
			t.Fatalf("verdict %+v, want excluded, canceled, not retryable", v)
		}
	}
	wantState(t, p, breaker.StateClosed)
}

func TestTimeWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breakerOnly(breaker.Config{WindowType: breaker.WindowTime, WindowSize: 3, MinimumCalls: 3}))
		calls(t, p, errBoom, errBoom) // bucket 0
		time.Sleep(2*time.Second + 999*time.Millisecond)
		// Bucket 0 is still in the 3-second window (buckets 0, 1, 2).
		calls(t, p, nil) // 2 of 3
		wantState(t, p, breaker.StateOpen)

		q := mustNew(t, breakerOnly(breaker.Config{WindowType: breaker.WindowTime, WindowSize: 3, MinimumCalls: 3}))
		calls(t, q, errBoom, errBoom) // bucket 0
		time.Sleep(3 * time.Second)
		// Bucket 0 has left the window (buckets 1, 2, 3).
		calls(t, q, nil, nil, errBoom) // 1 of 3
		wantState(t, q, breaker.StateClosed)
		time.Sleep(time.Second)
		calls(t, q, errBoom) // bucket 4: window S S F F
		wantState(t, q, breaker.StateOpen)
	})
}

func TestTimeWindowMinimumCalls(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breakerOnly(breaker.Config{WindowType: breaker.WindowTime, WindowSize: 2, MinimumCalls: 3}))
		for range 10 {
			calls(t, p, errBoom, errBoom)
			time.Sleep(2 * time.Second) // never 3 calls in the window
		}
		wantState(t, p, breaker.StateClosed)
	})
}

func TestOpenRejectsWithoutRunning(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 1}))
	calls(t, p, errBoom)
	wantState(t, p, breaker.StateOpen)
	ran, err := call(p, 0, nil)
	if ran {
		t.Fatal("fn ran with the breaker open")
	}
	if !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("err %v, want ErrOpen", err)
	}
	be := asError(t, err)
	if be.Attempts != 0 || be.Last != nil || err.Error() != "breaker: circuit open" {
		t.Errorf("error %+v %q", be, err)
	}
}

func tripped(t *testing.T, c breaker.Config) *breaker.Policy {
	t.Helper()
	c.MinimumCalls = 1
	p := mustNew(t, breakerOnly(c))
	calls(t, p, errBoom)
	wantState(t, p, breaker.StateOpen)
	return p
}

func TestHalfOpenAfterOpenDuration(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := tripped(t, breaker.Config{OpenDuration: 10 * time.Second})
		time.Sleep(10*time.Second - time.Nanosecond)
		wantState(t, p, breaker.StateOpen)
		if ran, err := call(p, 0, nil); ran || !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("before OpenDuration: ran %v, err %v", ran, err)
		}
		time.Sleep(time.Nanosecond)
		wantState(t, p, breaker.StateHalfOpen)
	})
}

// trial starts a half-open trial call that takes d and returns err; the
// returned channel yields whether fn ran and Do's error.
type trialResult struct {
	ran bool
	err error
}

func trial(p *breaker.Policy, d time.Duration, err error) <-chan trialResult {
	ch := make(chan trialResult, 1)
	go func() {
		ran, got := call(p, d, err)
		ch <- trialResult{ran, got}
	}()
	return ch
}

func TestHalfOpenAdmitsExactlyHalfOpenCalls(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := tripped(t, breaker.Config{OpenDuration: time.Second, HalfOpenCalls: 3})
		time.Sleep(time.Second)
		var trials []<-chan trialResult
		for range 3 {
			trials = append(trials, trial(p, time.Second, nil))
		}
		synctest.Wait() // the three are running
		for range 5 {
			if ran, err := call(p, 0, nil); ran || !errors.Is(err, breaker.ErrOpen) {
				t.Fatalf("4th call in half-open: ran %v, err %v", ran, err)
			}
		}
		for _, ch := range trials {
			if r := <-ch; !r.ran || r.err != nil {
				t.Fatalf("trial: %+v", r)
			}
		}
		wantState(t, p, breaker.StateClosed)
	})
}

// The trial calls are judged together once all have completed (Resilience4j):
// one failure in three is below a 50% failure rate, so the breaker closes.
func TestHalfOpenJudgesAllTrialCalls(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := tripped(t, breaker.Config{OpenDuration: time.Second, HalfOpenCalls: 3})
		time.Sleep(time.Second)
		a := trial(p, time.Second, errBoom)
		b := trial(p, 2*time.Second, nil)
		c := trial(p, 3*time.Second, nil)
		<-a
		wantState(t, p, breaker.StateHalfOpen) // a failure alone does not decide
		<-b
		wantState(t, p, breaker.StateHalfOpen)
		<-c
		wantState(t, p, breaker.StateClosed)
	})
}

func TestClosingEmptiesWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 3, OpenDuration: time.Second, HalfOpenCalls: 1}))
		calls(t, p, errBoom, errBoom, errBoom)
		wantState(t, p, breaker.StateOpen)
		time.Sleep(time.Second)
		calls(t, p, nil)
		wantState(t, p, breaker.StateClosed)
		calls(t, p, errBoom, errBoom) // 2 calls: below MinimumCalls again
		wantState(t, p, breaker.StateClosed)
		calls(t, p, nil) // 2 of 3
		wantState(t, p, breaker.StateOpen)
	})
}

func TestHalfOpenReopens(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := tripped(t, breaker.Config{OpenDuration: time.Second, HalfOpenCalls: 3})
		time.Sleep(time.Second)
		a := trial(p, time.Second, errBoom)
		b := trial(p, time.Second, nil)
		c := trial(p, 2*time.Second, errBoom)
		<-a
		<-b
		wantState(t, p, breaker.StateHalfOpen)
		<-c // 2 of 3 failed: 66% >= 50%
		wantState(t, p, breaker.StateOpen)
		time.Sleep(time.Second - time.Nanosecond)
		wantState(t, p, breaker.StateOpen)
		time.Sleep(time.Nanosecond)
		wantState(t, p, breaker.StateHalfOpen)
	})
}

func TestHalfOpenSlowTrialsReopen(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := tripped(t, breaker.Config{OpenDuration: time.Second, HalfOpenCalls: 2, SlowCallRate: 50, SlowCallDuration: time.Second})
		time.Sleep(time.Second)
		a := trial(p, 2*time.Second, nil)
		b := trial(p, 0, nil)
		<-a
		<-b
		wantState(t, p, breaker.StateOpen)
	})
}

// An excluded trial call frees its slot, so another call is admitted.
func TestHalfOpenExcludedFreesSlot(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := tripped(t, breaker.Config{OpenDuration: time.Second, HalfOpenCalls: 1})
		time.Sleep(time.Second)
		if ran, err := call(p, 0, errBad); !ran || !errors.Is(err, errBad) {
			t.Fatalf("excluded trial: ran %v, err %v", ran, err)
		}
		wantState(t, p, breaker.StateHalfOpen)
		calls(t, p, nil)
		wantState(t, p, breaker.StateClosed)
	})
}

// An attempt counts only in the state it was admitted in: a call that began
// while closed and ends while half-open is not a trial call.
func TestLateResultIsNotATrial(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breakerOnly(breaker.Config{MinimumCalls: 1, OpenDuration: time.Second, HalfOpenCalls: 1}))
		late := trial(p, 5*time.Second, nil) // admitted while closed, succeeds at 5s
		synctest.Wait()
		calls(t, p, errBoom)
		wantState(t, p, breaker.StateOpen)
		time.Sleep(2 * time.Second)
		wantState(t, p, breaker.StateHalfOpen)
		if r := <-late; !r.ran || r.err != nil {
			t.Fatalf("late call: %+v", r)
		}
		// Had it counted as the one trial call, the breaker would have closed.
		wantState(t, p, breaker.StateHalfOpen)
		calls(t, p, nil)
		wantState(t, p, breaker.StateClosed)
	})
}

// A panic in a trial call counts as a failure and reopens the breaker at once,
// as gobreaker does with a failed trial, without waiting for the others.
func TestPanicInTrialReopens(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := tripped(t, breaker.Config{OpenDuration: time.Second, HalfOpenCalls: 3})
		time.Sleep(time.Second)
		func() {
			defer func() {
				if r := recover(); r != "kaboom" {
					t.Errorf("recovered %v, want kaboom", r)
				}
			}()
			breaker.Do(context.Background(), p, func(context.Context) (int, error) { panic("kaboom") })
		}()
		wantState(t, p, breaker.StateOpen)
	})
}

// An attempt admitted before a state change counts nowhere: a call that began
// before the breaker opened and ends after it closed again stays out of the
// new window.
func TestLateResultStaysOutOfNewWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breakerOnly(breaker.Config{WindowSize: 2, MinimumCalls: 2, OpenDuration: time.Second, HalfOpenCalls: 1}))
		late := trial(p, 5*time.Second, errBoom) // admitted while closed, fails at 5s
		synctest.Wait()
		calls(t, p, errBoom, errBoom)
		wantState(t, p, breaker.StateOpen)
		time.Sleep(time.Second)
		calls(t, p, nil) // the one trial call closes the breaker
		wantState(t, p, breaker.StateClosed)
		if r := <-late; !r.ran || !errors.Is(r.err, errBoom) {
			t.Fatalf("late call: %+v", r)
		}
		calls(t, p, nil)
		// The window holds this success alone, below MinimumCalls; had the late
		// failure counted, 1 of 2 would have failed (50%) and opened it.
		wantState(t, p, breaker.StateClosed)
	})
}
