package breaker

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// State is the state of a [Policy]'s circuit breaker.
type State int

// The states of a circuit breaker. The zero value is [StateClosed].
const (
	// StateClosed lets every call through and judges the sliding window.
	StateClosed State = iota
	// StateHalfOpen lets exactly Config.HalfOpenCalls trial calls through and
	// rejects the rest with [ErrOpen].
	StateHalfOpen
	// StateOpen rejects every call with [ErrOpen] until Config.OpenDuration has passed.
	StateOpen
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateHalfOpen:
		return "half-open"
	case StateOpen:
		return "open"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Outcome is what one attempt means to the circuit breaker.
type Outcome int

// The outcomes of an attempt. The zero value is [OutcomeSuccess].
const (
	// OutcomeSuccess counts as a success (and as slow if it took longer than
	// Config.SlowCallDuration).
	OutcomeSuccess Outcome = iota
	// OutcomeFailure counts as a failure (and as slow if it took longer than
	// Config.SlowCallDuration).
	OutcomeFailure
	// OutcomeExcluded counts as neither: the call is left out of every rate, as
	// when the caller cancelled it or a request was the caller's own fault.
	OutcomeExcluded
)

// String returns "success", "failure" or "excluded".
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeFailure:
		return "failure"
	case OutcomeExcluded:
		return "excluded"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Class names the kind of an error, for metrics, traces and fallback decisions.
// The empty Class means none.
type Class string

// The error classes a classifier may report.
const (
	ClassRateLimited     Class = "rate_limited"
	ClassOverloaded      Class = "overloaded"
	ClassUnavailable     Class = "unavailable"
	ClassTimeout         Class = "timeout"
	ClassClientError     Class = "client_error"
	ClassContextLength   Class = "context_length_exceeded"
	ClassContentFiltered Class = "content_filtered"
	ClassAuth            Class = "auth"
	ClassServerError     Class = "server_error"
	ClassConnection      Class = "connection"
	ClassCanceled        Class = "canceled"
	ClassUnknown         Class = "unknown"
)

// Signals are the service-mesh facts a classifier found in a reply. A [Policy]
// acts on them: see [Do].
type Signals struct {
	// MeshRetried reports that the mesh already retried this request (for
	// example x-envoy-attempt-count > 1). The policy does not retry on top.
	MeshRetried bool
	// NoHealthyUpstream reports that the mesh has no endpoint left to send to.
	// Retrying is pointless: the policy fails at once so a fallback can act.
	NoHealthyUpstream bool
	// Overloaded reports that a sidecar shed the request (x-envoy-overloaded).
	// A retry waits at least the hint and at least the un-jittered backoff.
	Overloaded bool
}

// Verdict is a classifier's judgement of one failed attempt.
type Verdict struct {
	// Outcome is what the attempt counts as in the breaker's window.
	Outcome Outcome
	// Retryable reports whether another attempt may help.
	Retryable bool
	// Class is the kind of error; empty means none.
	Class Class
	// RetryAfter is the upstream's wait hint (Retry-After, retry-after-ms);
	// zero means none.
	RetryAfter time.Duration
	// Signals are the mesh facts found in the reply.
	Signals Signals
}

// Classifier judges the error of one attempt. A [Policy] calls it only for a
// non-nil error: a nil error is always a success. It must be safe for
// concurrent use.
type Classifier func(err error) Verdict

// Verdicter is implemented by errors that know their own verdict, such as the
// HTTP and gRPC errors of this module. [DefaultClassifier] asks them first.
type Verdicter interface {
	BreakerVerdict() Verdict
}

// DefaultClassifier is the classifier a [Policy] uses when Config.Classifier is
// nil. In order:
//   - an error that is, or wraps, a [Verdicter] (found with errors.As) gives
//     its own verdict;
//   - context.Canceled (the caller's cancellation) is excluded, not retryable,
//     [ClassCanceled];
//   - context.DeadlineExceeded is a retryable failure, [ClassTimeout];
//   - anything else is a retryable failure, [ClassUnknown].
//
// A nil error, which a Policy never passes, is a success.
func DefaultClassifier(err error) Verdict {
	if err == nil {
		return Verdict{}
	}
	var vr Verdicter
	if errors.As(err, &vr) {
		return vr.BreakerVerdict()
	}
	if errors.Is(err, context.Canceled) {
		return Verdict{Outcome: OutcomeExcluded, Class: ClassCanceled}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Verdict{Outcome: OutcomeFailure, Retryable: true, Class: ClassTimeout}
	}
	return Verdict{Outcome: OutcomeFailure, Retryable: true, Class: ClassUnknown}
}
