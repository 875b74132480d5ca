package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

func TestDefaultClassifier(t *testing.T) {
	t.Parallel()
	own := breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassContextLength, RetryAfter: time.Second}
	tests := []struct {
		name string
		err  error
		want breaker.Verdict
	}{
		{"nil", nil, breaker.Verdict{}},
		{"verdicter", &hintError{own}, own},
		{"wrapped verdicter", fmt.Errorf("call: %w", &hintError{own}), own},
		{"verdicter beats cancel", fmt.Errorf("%w: %w", context.Canceled, &hintError{own}), own},
		{"canceled", context.Canceled, breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassCanceled}},
		{"wrapped canceled", fmt.Errorf("read: %w", context.Canceled), breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassCanceled}},
		{"deadline", context.DeadlineExceeded, breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassTimeout}},
		{"per-try timeout", breaker.ErrPerTryTimeout, breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassTimeout}},
		{"other", errors.New("eof"), breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassUnknown}},
	}
	for _, tt := range tests {
		if got := breaker.DefaultClassifier(tt.err); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    *breaker.Error
		want string
	}{
		{&breaker.Error{Attempts: 2, Last: errBoom, Reason: breaker.ErrRetriesExhausted}, "breaker: 2 attempts: boom"},
		{&breaker.Error{Attempts: 1, Last: errBoom, Reason: breaker.ErrNotRetryable}, "breaker: 1 attempt: boom"},
		{&breaker.Error{Attempts: 1, Last: errBoom, Reason: breaker.ErrBudgetExhausted}, "breaker: 1 attempt (retry budget exhausted): boom"},
		{&breaker.Error{Attempts: 2, Last: errBoom, Reason: breaker.ErrOpen}, "breaker: 2 attempts (circuit open): boom"},
		{&breaker.Error{Attempts: 1, Last: errBoom, Reason: context.Canceled}, "breaker: 1 attempt (context canceled): boom"},
		{&breaker.Error{Attempts: 1, Last: errBoom, Reason: breaker.ErrDeadlineTooShort}, "breaker: 1 attempt (deadline too short for a retry): boom"},
		{&breaker.Error{Attempts: 1, Last: errBoom, Reason: breaker.ErrMeshRetried}, "breaker: 1 attempt (mesh already retried): boom"},
		{&breaker.Error{Reason: breaker.ErrOpen}, "breaker: circuit open"},
		{&breaker.Error{}, "breaker: call failed"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%q, want %q", got, tt.want)
		}
	}
	e := &breaker.Error{Attempts: 1, Last: errBoom, Reason: breaker.ErrBudgetExhausted}
	if !errors.Is(e, breaker.ErrBudgetExhausted) || !errors.Is(e, errBoom) || errors.Is(e, breaker.ErrOpen) {
		t.Error("errors.Is on *Error")
	}
}

// A retry rejected by a breaker that opened meanwhile is not retried again and
// keeps the earlier attempt's value and error.
func TestRetryRejectedByOpenBreaker(t *testing.T) {
	t.Parallel()
	p := mustNew(t, breaker.Config{MinimumCalls: 1, MaxAttempts: 5, Backoff: breaker.Backoff{Initial: time.Microsecond}})
	v, err, starts := attempts(context.Background(), p, errBoom)
	if len(starts) != 1 || v != 1 {
		t.Fatalf("%d attempts, value %d", len(starts), v)
	}
	be := asError(t, err)
	if be.Reason != breaker.ErrOpen || be.Attempts != 1 || !errors.Is(err, errBoom) || !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("error %+v", be)
	}
	if got, want := err.Error(), "breaker: 1 attempt (circuit open): boom"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

func TestClassOf(t *testing.T) {
	t.Parallel()
	limited := &hintError{breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassRateLimited}}
	classless := &hintError{breaker.Verdict{Outcome: breaker.OutcomeExcluded}}
	tests := []struct {
		name string
		err  error
		want breaker.Class
	}{
		{"nil", nil, ""},
		{"*Error", &breaker.Error{Attempts: 2, Last: errBoom, Verdict: breaker.Verdict{Class: breaker.ClassServerError}}, breaker.ClassServerError},
		{"wrapped *Error", fmt.Errorf("fallback: %w", &breaker.Error{Attempts: 1, Last: errBoom, Verdict: breaker.Verdict{Class: breaker.ClassAuth}}), breaker.ClassAuth},
		{"*Error's verdict beats its Last", &breaker.Error{Attempts: 1, Last: limited, Verdict: breaker.Verdict{Class: breaker.ClassOverloaded}}, breaker.ClassOverloaded},
		{"*Error without a class: its Last", &breaker.Error{Attempts: 1, Last: limited}, breaker.ClassRateLimited},
		{"*Error rejected before any attempt", &breaker.Error{Reason: breaker.ErrOpen}, breaker.ClassUnknown},
		{"*Error the caller cancelled", &breaker.Error{Reason: context.Canceled}, breaker.ClassCanceled},
		{"verdicter", limited, breaker.ClassRateLimited},
		{"wrapped verdicter", fmt.Errorf("call: %w", limited), breaker.ClassRateLimited},
		{"verdicter naming no class", classless, ""},
		{"canceled", context.Canceled, breaker.ClassCanceled},
		{"wrapped canceled", fmt.Errorf("read: %w", context.Canceled), breaker.ClassCanceled},
		{"deadline", context.DeadlineExceeded, breaker.ClassTimeout},
		{"ErrTimeout", breaker.ErrTimeout, breaker.ClassTimeout},
		{"ErrPerTryTimeout", breaker.ErrPerTryTimeout, breaker.ClassTimeout},
		{"other", errors.New("eof"), breaker.ClassUnknown},
		{"sentinel", breaker.ErrOpen, breaker.ClassUnknown},
	}
	for _, tt := range tests {
		if got := breaker.ClassOf(tt.err); got != tt.want {
			t.Errorf("%s: ClassOf = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// ClassOf on what Do really returns.
func TestClassOfDoErrors(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := mustNew(t, breaker.Config{PerTryTimeout: time.Second, MaxAttempts: 1, MinimumCalls: 2})
		_, err := breaker.Do(context.Background(), p, stubborn(time.Minute, nil))
		if got := breaker.ClassOf(err); got != breaker.ClassTimeout {
			t.Errorf("per-try timeout: ClassOf = %q, want timeout (err %v)", got, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		_, err = breaker.Do(ctx, p, func(context.Context) (int, error) {
			cancel()
			return 0, errBoom
		})
		if got := breaker.ClassOf(err); got != breaker.ClassCanceled {
			t.Errorf("caller cancelled: ClassOf = %q, want canceled (err %v)", got, err)
		}
		_, err = breaker.Do(context.Background(), p, func(context.Context) (int, error) { return 0, errBoom })
		if !errors.Is(err, breaker.ErrRetriesExhausted) {
			t.Fatalf("err %v", err)
		}
		wantState(t, p, breaker.StateOpen)
		_, err = breaker.Do(context.Background(), p, func(context.Context) (int, error) { return 0, nil })
		if got := breaker.ClassOf(err); !errors.Is(err, breaker.ErrOpen) || got != breaker.ClassUnknown {
			t.Errorf("rejected: ClassOf = %q, want unknown (err %v)", got, err)
		}
		time.Sleep(time.Minute) // the abandoned fn finishes
	})
}
