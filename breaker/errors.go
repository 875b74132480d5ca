package breaker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
)

// ErrOpen is the reason a call was rejected because the circuit is open, or
// half-open with every trial call already admitted. A rejected call never runs
// fn. errors.Is(err, ErrOpen) holds for the [*Error] that [Do] returns then.
var ErrOpen = errors.New("breaker: circuit open")

// Reasons why [Do] stopped; [Error.Reason] holds one of them (or the caller's
// context error) and errors.Is matches it.
var (
	// ErrRetriesExhausted: every one of MaxAttempts attempts failed.
	ErrRetriesExhausted = errors.New("breaker: retries exhausted")
	// ErrNotRetryable: the classifier judged the last error not retryable.
	ErrNotRetryable = errors.New("breaker: not retryable")
	// ErrRetryAfterTooLong: the upstream asked to wait longer than
	// MaxRetryAfter; [Error.RetryAfter] carries the hint.
	ErrRetryAfterTooLong = errors.New("breaker: retry-after exceeds MaxRetryAfter")
	// ErrDeadlineTooShort: the time left before the deadline (the caller's or
	// the overall Timeout) cannot fit the wait plus MinTryTime, so the policy
	// stopped early to leave the time to a fallback.
	ErrDeadlineTooShort = errors.New("breaker: deadline too short for a retry")
	// ErrBudgetExhausted: the retry budget (BudgetPercent of the calls in
	// flight, at least MinRetryConcurrency) had no room for this retry.
	ErrBudgetExhausted = errors.New("breaker: retry budget exhausted")
	// ErrNoHealthyUpstream: the mesh reported no healthy upstream; no retry.
	ErrNoHealthyUpstream = errors.New("breaker: no healthy upstream")
	// ErrMeshRetried: the mesh already retried the request; no retry on top.
	ErrMeshRetried = errors.New("breaker: mesh already retried")
)

// Errors of the time limiter. Both wrap context.DeadlineExceeded. An attempt
// that the time limiter abandons fails with one of them, classified (without
// calling the Classifier) as a retryable failure of [ClassTimeout]. ErrTimeout
// is also the [Error.Reason] when the overall Timeout ended the call.
var (
	// ErrTimeout: the overall Timeout of the call expired.
	ErrTimeout error = &timeoutError{"breaker: timeout"}
	// ErrPerTryTimeout: the attempt's PerTryTimeout expired.
	ErrPerTryTimeout error = &timeoutError{"breaker: per-try timeout"}
)

type timeoutError struct{ msg string }

func (e *timeoutError) Error() string { return e.msg + ": " + context.DeadlineExceeded.Error() }
func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }

// Error is the error [Do] returns when a call fails. Unwrap gives Last, so
// errors.Is and errors.As reach the underlying error; errors.Is(err, Reason)
// also holds, so callers can branch on the sentinels above or on [ErrOpen].
type Error struct {
	// Attempts is how many attempts ran fn (0 when the breaker rejected the
	// first one).
	Attempts int
	// Last is the error of the last attempt; nil when no attempt ran.
	Last error
	// Verdict is the classifier's verdict on Last.
	Verdict Verdict
	// Reason says why the policy stopped: ErrRetriesExhausted,
	// ErrNotRetryable, ErrRetryAfterTooLong, ErrDeadlineTooShort,
	// ErrBudgetExhausted, ErrNoHealthyUpstream, ErrMeshRetried, ErrOpen,
	// ErrTimeout, or the caller's ctx.Err() (context.Canceled or
	// context.DeadlineExceeded).
	Reason error
	// RetryAfter is the wait hint of the last attempt's verdict; zero if none.
	// With ErrRetryAfterTooLong it is the hint that was over the cap.
	RetryAfter time.Duration
}

// Error returns "breaker: N attempts: <last error>", with the reason in
// parentheses unless the retries were simply exhausted or the error was not
// retryable, and the reason alone when no attempt ran.
func (e *Error) Error() string {
	if e.Attempts == 0 || e.Last == nil {
		if e.Reason == nil {
			return "breaker: call failed"
		}
		return e.Reason.Error()
	}
	var b strings.Builder
	b.WriteString("breaker: ")
	b.WriteString(strconv.Itoa(e.Attempts))
	if e.Attempts == 1 {
		b.WriteString(" attempt")
	} else {
		b.WriteString(" attempts")
	}
	if e.Reason != nil && e.Reason != ErrRetriesExhausted && e.Reason != ErrNotRetryable {
		b.WriteString(" (")
		b.WriteString(strings.TrimPrefix(e.Reason.Error(), "breaker: "))
		if e.Reason == ErrRetryAfterTooLong {
			b.WriteString(": ")
			b.WriteString(e.RetryAfter.String())
		}
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(e.Last.Error())
	return b.String()
}

// Unwrap returns Last.
func (e *Error) Unwrap() error { return e.Last }

// Is reports whether target is the Reason, so errors.Is(err, ErrOpen) and the
// like work.
func (e *Error) Is(target error) bool { return target != nil && target == e.Reason }

// ClassOf returns the [Class] of err, for metrics, traces and fallback
// decisions, as connect's CodeOf returns an error's code. In order:
//   - an [*Error] in err's chain gives its Verdict's Class, the verdict on the
//     last attempt, when that names one;
//   - otherwise an error in the chain that implements [Verdicter] gives its
//     verdict's Class (empty if the verdict names none);
//   - context.Canceled gives [ClassCanceled], and context.DeadlineExceeded
//     (which [ErrTimeout] and [ErrPerTryTimeout] wrap) gives [ClassTimeout];
//   - any other error gives [ClassUnknown], and nil gives the empty Class.
//
// So a call the open breaker rejected before any attempt ran is
// [ClassUnknown] (errors.Is(err, [ErrOpen]) tells it apart), and a call the
// caller cancelled is [ClassCanceled].
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) && e.Verdict.Class != "" {
		return e.Verdict.Class
	}
	return DefaultClassifier(err).Class
}
