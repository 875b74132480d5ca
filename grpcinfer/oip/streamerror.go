package oip

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// The time limits of a streamed inference ([StreamConfig]), as causes of a [StreamError].
var (
	// ErrFirstResponseTimeout: no response came within StreamConfig.FirstResponseTimeout of
	// the request being sent.
	ErrFirstResponseTimeout = errors.New("oip: no response within the first-response timeout")
	// ErrIdleTimeout: no response came within StreamConfig.IdleTimeout while the caller
	// waited in Recv.
	ErrIdleTimeout = errors.New("oip: no response within the idle timeout")
	// ErrMaxStreamDuration: the stream lasted longer than StreamConfig.MaxStreamDuration.
	ErrMaxStreamDuration = errors.New("oip: stream exceeded its maximum duration")
)

// StreamError is the error of a streamed inference, from [StreamClient.Infer] (nothing was
// delivered: Delivered is 0, and the failure was retried as far as the policy allowed) or from
// [InferStream.Recv] (after Delivered responses reached the caller: never retried, so as not
// to deliver anything twice). Its GRPCStatus gives status.Code and status.FromError the code:
// DEADLINE_EXCEEDED for the time limits, UNAVAILABLE when the circuit breaker refused the
// call, CANCELLED or DEADLINE_EXCEEDED when the caller's context ended, otherwise the code of
// the failure (UNKNOWN for an error response without a code, as Triton sends them).
type StreamError struct {
	// Delivered counts the responses that reached the caller before the failure.
	Delivered int
	// Attempts counts the streams opened (0 when the circuit breaker refused the first).
	Attempts int
	// Err is the cause: [ErrFirstResponseTimeout], [ErrIdleTimeout], [ErrMaxStreamDuration],
	// the caller's context error, the stream's gRPC status error, a status error made from an
	// error response, a *[TensorError] for a malformed response, or, when the policy gave up
	// before the first response, the *breaker.Error (errors.Is(err, breaker.ErrOpen) and the
	// other breaker sentinels work through it).
	Err error
}

// Error says how much was delivered and why the stream ended.
func (e *StreamError) Error() string {
	return fmt.Sprintf("oip: streamed inference failed after %d responses (%d attempts): %v", e.Delivered, e.Attempts, e.Err)
}

// Unwrap returns Err.
func (e *StreamError) Unwrap() error { return e.Err }

// GRPCStatus returns the status of the failure, with the error's text as its message.
func (e *StreamError) GRPCStatus() *status.Status {
	return status.New(streamCode(e.Err), e.Error())
}

func streamCode(err error) codes.Code {
	switch {
	case errors.Is(err, ErrFirstResponseTimeout), errors.Is(err, ErrIdleTimeout), errors.Is(err, ErrMaxStreamDuration):
		return codes.DeadlineExceeded
	case errors.Is(err, breaker.ErrOpen):
		return codes.Unavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Code()
	}
	return status.Code(err)
}

// BreakerVerdict judges the failure for a breaker.Policy: never retryable once a response was
// delivered; before that, retryable when another stream may do better (the stream broke, the
// server was unavailable, overloaded or too slow to answer).
func (e *StreamError) BreakerVerdict() breaker.Verdict {
	v := streamVerdict(e.Err)
	v.Retryable = v.Retryable && e.Delivered == 0
	return v
}

func streamVerdict(err error) breaker.Verdict {
	failure := func(class breaker.Class, retryable bool) breaker.Verdict {
		return breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: class, Retryable: retryable}
	}
	switch {
	case errors.Is(err, ErrFirstResponseTimeout), errors.Is(err, ErrIdleTimeout), errors.Is(err, ErrMaxStreamDuration):
		return failure(breaker.ClassTimeout, true)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return breaker.DefaultClassifier(err) // the caller's context: its own doing
	}
	var vr breaker.Verdicter
	if errors.As(err, &vr) {
		return vr.BreakerVerdict() // the connection's interceptors (package grpcinfer) judged it
	}
	switch status.Code(err) {
	case codes.Unavailable:
		return failure(breaker.ClassUnavailable, true)
	case codes.ResourceExhausted:
		return failure(breaker.ClassOverloaded, true)
	case codes.DeadlineExceeded:
		return failure(breaker.ClassTimeout, true)
	case codes.Aborted:
		return failure(breaker.ClassServerError, true)
	case codes.Canceled: // a reset the caller did not ask for
		return failure(breaker.ClassConnection, true)
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented:
		return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassClientError}
	case codes.Unauthenticated, codes.PermissionDenied:
		return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassAuth}
	case codes.Internal, codes.DataLoss:
		return failure(breaker.ClassServerError, false)
	}
	return failure(breaker.ClassUnknown, false)
}

// responseError is the error an error response (error_message set) stands for: a status with
// the code the server sent as ErrorCodeParameter, UNKNOWN when it sent none.
func responseError(r *inferencepb.ModelStreamInferResponse) error {
	code := codes.Unknown
	if p, ok := r.GetInferResponse().GetParameters()[ErrorCodeParameter]; ok {
		if c := p.GetInt64Param(); c > 0 && c <= int64(codes.Unauthenticated) {
			code = codes.Code(c)
		}
	}
	return status.Error(code, r.GetErrorMessage())
}
