package grpcinfer

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/mesh"
)

// Envoy holds the facts an Envoy sidecar (or any Envoy hop) left in a gRPC response's
// metadata. Envoy answers a gRPC call it cannot route with a trailers-only response (no
// headers, only a status): 503 and 504 become UNAVAILABLE, 429 becomes UNAVAILABLE too, and
// its local reply ("no healthy upstream", "upstream connect error or disconnect/reset before
// headers. ...") becomes the grpc-message. It is the one model of mesh signals in this module:
// transport.Envoy and tracing.Mesh are the same type.
type Envoy = mesh.Envoy

// ParseEnvoy reads the Envoy facts from a call's header and trailer metadata (either may be
// nil; a value in the trailer wins). For a trailers-only response, header is nil and
// everything is in trailer.
func ParseEnvoy(header, trailer metadata.MD) Envoy {
	return mesh.ParseHeaders(func(key string) string {
		key = strings.ToLower(key) // metadata keys are lower case
		if v := last(trailer, key); v != "" {
			return v
		}
		return last(header, key)
	})
}

func last(md metadata.MD, key string) string {
	if v := md[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

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
	if e.Code == codes.Unavailable && e.TrailersOnly {
		e.Envoy.ParseLocalReply(http.StatusServiceUnavailable, st.Message()) // Envoy's 503 and 504
	}
	e.Verdict = verdictFor(e, retryable, f)
	return e
}

// verdictFor maps a gRPC failure to a breaker verdict: the caller's own end and a request
// the caller made too large come first (they are no outage); everything else is
// mesh.GRPCVerdict's, from the code and the mesh's facts.
func verdictFor(e *Error, retryable bool, f attemptFacts) breaker.Verdict {
	if f.callerCtx != nil {
		if cerr := f.callerCtx.Err(); cerr != nil {
			if errors.Is(cerr, context.Canceled) {
				return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassCanceled}
			}
			return breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassTimeout}
		}
	}
	if e.Code == codes.ResourceExhausted && e.TrailersOnly &&
		(overSendLimit(f.req, f.maxSend) || overServerLimit(e.status.Message())) {
		return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassClientError}
	}
	return mesh.GRPCVerdict(uint32(e.Code), e.Envoy, mesh.GRPCReply{
		Opened: f.trailer != nil, TrailersOnly: e.TrailersOnly, Retryable: retryable, RetryAfter: e.RetryAfter})
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
