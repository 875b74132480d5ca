package breaker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

var (
	errBoom = errors.New("boom")
	errBad  = errors.New("bad request") // the caller's fault: excluded by testClassifier
	errStop = errors.New("stop")        // not retryable under testClassifier
)

// testClassifier is DefaultClassifier, except that errBad is excluded and
// errStop is a failure that is not retryable.
func testClassifier(err error) breaker.Verdict {
	switch {
	case errors.Is(err, errBad):
		return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassClientError}
	case errors.Is(err, errStop):
		return breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassServerError}
	}
	return breaker.DefaultClassifier(err)
}

// breakerOnly is a Config that isolates the circuit breaker: one attempt, no
// time limit (fn runs on the caller's goroutine).
func breakerOnly(c breaker.Config) breaker.Config {
	c.MaxAttempts = 1
	c.Timeout = breaker.NoTimeout
	if c.Classifier == nil {
		c.Classifier = testClassifier
	}
	return c
}

func mustNew(t testing.TB, c breaker.Config) *breaker.Policy {
	t.Helper()
	p, err := breaker.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// call runs one call through p that takes d and returns err. ran reports
// whether fn ran.
func call(p *breaker.Policy, d time.Duration, err error) (ran bool, got error) {
	_, got = breaker.Do(context.Background(), p, func(context.Context) (int, error) {
		ran = true
		time.Sleep(d)
		return 0, err
	})
	return ran, got
}

// calls runs one instant call per error in errs (nil = success), in order.
func calls(t *testing.T, p *breaker.Policy, errs ...error) {
	t.Helper()
	for i, err := range errs {
		if ran, _ := call(p, 0, err); !ran {
			t.Fatalf("call %d (%v) was rejected; state %v", i, err, p.State())
		}
	}
}

func wantState(t *testing.T, p *breaker.Policy, want breaker.State) {
	t.Helper()
	if got := p.State(); got != want {
		t.Fatalf("state %v, want %v", got, want)
	}
}

// asError returns err as *breaker.Error or fails the test.
func asError(t *testing.T, err error) *breaker.Error {
	t.Helper()
	var be *breaker.Error
	if !errors.As(err, &be) {
		t.Fatalf("error %v (%T) is not a *breaker.Error", err, err)
	}
	return be
}
