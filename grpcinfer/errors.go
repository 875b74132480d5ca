package grpcinfer

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/infermesh/infermesh/breaker"
)

// Envoy holds the facts an Envoy sidecar (or any Envoy hop) left in a gRPC response's
// metadata. Envoy answers a gRPC call it cannot route with a trailers-only response (no
// headers, only a status): 503 and 504 become UNAVAILABLE, 429 becomes UNAVAILABLE too.
type Envoy struct {
	// Overloaded: x-envoy-overloaded was set; the sidecar's own circuit breaker shed the call.
	Overloaded bool
	// NoHealthyUpstream: a trailers-only UNAVAILABLE whose grpc-message is Envoy's local
	// reply "no healthy upstream": every endpoint is ejected, retrying is pointless.
	NoHealthyUpstream bool
	// AttemptCount is x-envoy-attempt-count (0 when absent); above 1 the mesh retried.
	AttemptCount int
	// UpstreamServiceTime is x-envoy-upstream-service-time (0 when absent): the upstream's
	// own time, so the difference to the client's timing is the cost of the hops.
	UpstreamServiceTime time.Duration
}

// ParseEnvoy reads the Envoy facts from a call's header and trailer metadata (either may be
// nil). For a trailers-only response, header is nil and everything is in trailer.
func ParseEnvoy(header, trailer metadata.MD) Envoy {
	var e Envoy
	for _, md := range []metadata.MD{header, trailer} {
		if v := last(md, "x-envoy-overloaded"); v != "" {
			e.Overloaded = e.Overloaded || v == "true"
		}
		if v := last(md, "x-envoy-attempt-count"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				e.AttemptCount = n
			}
		}
		if v := last(md, "x-envoy-upstream-service-time"); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				e.UpstreamServiceTime = time.Duration(n) * time.Millisecond
			}
		}
	}
	return e
}

func last(md metadata.MD, key string) string {
	if v := md[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// Envoy's local reply bodies, which become grpc-message on a trailers-only response. They
// are protocol data Envoy documents, not Go error text.
const (
	envoyNoHealthyUpstream = "no healthy upstream"
	envoyResetPrefix       = "upstream connect error or disconnect/reset before headers"
)

// grpcRecvTooLarge holds the grpc-message prefixes with which a grpc-go server refuses a
// request over its receive limit (RESOURCE_EXHAUSTED, trailers-only, before any handler
// runs): on the wire, then after decompression. Like Envoy's replies above, they are
// protocol text a server sends, not Go error text of ours.
var grpcRecvTooLarge = [...]string{
	"grpc: received message larger than max (",
	"grpc: received message after decompression larger than max ",
	"grpc: message after decompression larger than max (",
}

// Error is the error the client interceptors return for every failed call. It carries the
// gRPC status (GRPCStatus, so status.FromError, status.Code and grpc-go itself see the code
// and message the server sent), what the interceptor learned about the failure, and the
// breaker's verdict (BreakerVerdict, so a breaker.Policy around the call classifies it).
// Unwrap returns the cause: the *breaker.Error when a policy ran the call (so
// errors.Is(err, breaker.ErrOpen) works), otherwise the gRPC status error.
type Error struct {
	// Method is the full method name, "/pkg.Service/Method".
	Method string
	// Code is the call's gRPC code: the server's, or UNAVAILABLE when the breaker rejected
	// the call, DEADLINE_EXCEEDED for this package's time limits, CANCELLED when the caller
	// cancelled.
	Code codes.Code
	// Attempts is how many attempts were made (0 when the breaker rejected the call).
	Attempts int
	// Received is how many response messages reached the caller before the failure. Only a
	// failure with Received == 0 is ever retried.
	Received int
	// TrailersOnly reports that no response headers arrived: the server (or a proxy) answered
	// with a status alone, or the connection failed first. Envoy's local replies look so.
	TrailersOnly bool
	// RetryAfter is the server's grpc-retry-pushback-ms hint; 0 when none.
	RetryAfter time.Duration
	// Envoy holds the mesh facts found in the response metadata.
	Envoy Envoy
	// Verdict is the breaker verdict for the last attempt.
	Verdict breaker.Verdict

	status *status.Status
	cause  error
}

// Error returns "grpcinfer: <method>: <code>: <message>".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("grpcinfer: ")
	b.WriteString(e.Method)
	b.WriteString(": ")
	b.WriteString(e.Code.String())
	if msg := e.message(); msg != "" {
		b.WriteString(": ")
		b.WriteString(msg)
	}
	if e.Attempts > 1 {
		b.WriteString(" (")
		b.WriteString(strconv.Itoa(e.Attempts))
		b.WriteString(" attempts)")
	}
	return b.String()
}

func (e *Error) message() string {
	if e.status != nil {
		return e.status.Message()
	}
	if e.cause != nil {
		return e.cause.Error()
	}
	return ""
}

// GRPCStatus returns the status the server sent (details included) or, when the failure
// happened on the client side, a status with Code and the error's text.
func (e *Error) GRPCStatus() *status.Status {
	if e.status != nil && e.status.Code() == e.Code {
		return e.status
	}
	return status.New(e.Code, e.Error())
}

// BreakerVerdict returns Verdict, implementing breaker.Verdicter.
func (e *Error) BreakerVerdict() breaker.Verdict { return e.Verdict }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.cause }

// attemptFacts is what one attempt saw.
type attemptFacts struct {
	method   string
	header   metadata.MD // nil when no headers arrived
	trailer  metadata.MD // nil when no stream was opened at all
	received int
	// req is the request message, for telling a local send-size refusal apart.
	req     any
	maxSend int
	// callerCtx is the caller's context, to tell its cancellation from the server's.
	callerCtx context.Context
}

// attemptError builds the *Error of one failed attempt and its verdict.
func attemptError(err error, f attemptFacts) *Error {
	st := status.Convert(err)
	e := &Error{
		Method:       f.method,
		Code:         st.Code(),
		Attempts:     1,
		Received:     f.received,
		TrailersOnly: f.header == nil,
		Envoy:        ParseEnvoy(f.header, f.trailer),
		status:       st,
		cause:        err,
	}
	retryable := f.received == 0
	if vals := f.trailer["grpc-retry-pushback-ms"]; len(vals) > 0 {
		ms, perr := strconv.ParseInt(vals[0], 10, 64)
		if perr != nil || ms < 0 || len(vals) > 1 {
			retryable = false // gRFC A6: a malformed or negative pushback means "do not retry"
		} else {
			e.RetryAfter = time.Duration(ms) * time.Millisecond
		}
	}
	if e.Code == codes.Unavailable && e.TrailersOnly && st.Message() == envoyNoHealthyUpstream {
		e.Envoy.NoHealthyUpstream = true
	}
	e.Verdict = verdictFor(e, retryable, f)
	return e
}

// verdictFor maps a gRPC failure to a breaker verdict:
//
//	caller cancelled                          excluded, canceled, not retryable
//	caller's deadline expired                 failure, timeout, not retryable
//	INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
//	FAILED_PRECONDITION, OUT_OF_RANGE,
//	UNIMPLEMENTED                             excluded, client_error, not retryable
//	UNAUTHENTICATED, PERMISSION_DENIED        excluded, auth, not retryable
//	UNAVAILABLE                               failure, unavailable (connection when no stream
//	                                          could be opened or Envoy reports a connect
//	                                          failure; overloaded when Envoy shed it),
//	                                          retryable before any response message
//	RESOURCE_EXHAUSTED                        failure, overloaded, retryable only when no
//	                                          headers and no message arrived (a shed call);
//	                                          a request over the client's own send limit,
//	                                          or refused by the server as larger than its
//	                                          receive limit, is excluded, client_error, not
//	                                          retryable: the caller's mistake, not an outage
//	DEADLINE_EXCEEDED (server or a per-try)   failure, timeout, retryable before any message
//	ABORTED, CANCELLED (not by the caller)    failure, server_error / connection, retryable
//	                                          before any message
//	INTERNAL, DATA_LOSS, UNKNOWN              failure, server_error / unknown, not retryable
//
// Mesh signals come from the Envoy facts: x-envoy-overloaded, "no healthy upstream",
// x-envoy-attempt-count > 1.
func verdictFor(e *Error, retryable bool, f attemptFacts) breaker.Verdict {
	v := breaker.Verdict{Outcome: breaker.OutcomeFailure, RetryAfter: e.RetryAfter}
	v.Signals = breaker.Signals{
		MeshRetried:       e.Envoy.AttemptCount > 1,
		NoHealthyUpstream: e.Envoy.NoHealthyUpstream,
		Overloaded:        e.Envoy.Overloaded,
	}
	if f.callerCtx != nil {
		if cerr := f.callerCtx.Err(); cerr != nil {
			if errors.Is(cerr, context.Canceled) {
				return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassCanceled}
			}
			return breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassTimeout}
		}
	}
	switch e.Code {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented:
		return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassClientError}
	case codes.Unauthenticated, codes.PermissionDenied:
		return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassAuth}
	case codes.Unavailable:
		v.Class = breaker.ClassUnavailable
		switch {
		case e.Envoy.Overloaded:
			v.Class = breaker.ClassOverloaded
		case f.trailer == nil || (e.TrailersOnly && strings.HasPrefix(e.status.Message(), envoyResetPrefix)):
			// No stream was ever opened (the connection failed), or Envoy reports that the
			// upstream connection failed before any response: the request never ran.
			v.Class = breaker.ClassConnection
		}
		v.Retryable = retryable
	case codes.ResourceExhausted:
		if e.TrailersOnly && (overSendLimit(f.req, f.maxSend) || overServerLimit(e.status.Message())) {
			return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassClientError}
		}
		v.Class = breaker.ClassOverloaded
		v.Retryable = retryable && e.TrailersOnly
	case codes.DeadlineExceeded:
		v.Class = breaker.ClassTimeout
		v.Retryable = retryable
	case codes.Aborted:
		v.Class = breaker.ClassServerError
		v.Retryable = retryable
	case codes.Canceled:
		v.Class = breaker.ClassConnection
		v.Retryable = retryable
	case codes.Internal, codes.DataLoss:
		v.Class = breaker.ClassServerError
	default:
		v.Class = breaker.ClassUnknown
	}
	return v
}

func overSendLimit(req any, maxSend int) bool {
	m, ok := req.(proto.Message)
	return ok && maxSend > 0 && proto.Size(m) > maxSend
}

// overServerLimit reports whether a server's RESOURCE_EXHAUSTED message says the request was
// larger than the server's receive limit.
func overServerLimit(msg string) bool {
	for _, p := range grpcRecvTooLarge {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
