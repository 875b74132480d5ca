package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

// HTTPVerdict judges an HTTP reply for a breaker policy:
//
//	1xx-3xx                  success
//	401, 403                 excluded, not retryable, ClassAuth
//	408                      retryable failure, ClassTimeout
//	429                      retryable failure, ClassRateLimited
//	other 4xx (400, 404, 422, ...)  excluded, not retryable, ClassClientError
//	500, 502, other 5xx      retryable failure, ClassServerError
//	501, 505                 failure, not retryable, ClassServerError
//	503                      retryable failure, ClassUnavailable; and from Envoy:
//	  overloaded             retryable failure, ClassOverloaded, Signals.Overloaded
//	  no healthy upstream    failure, NOT retryable, ClassUnavailable, Signals.NoHealthyUpstream
//	  connect failure/reset  retryable failure, ClassConnection
//	504                      retryable failure, ClassTimeout (Envoy's "upstream request timeout" too)
//	529                      retryable failure, ClassOverloaded
//
// Any 5xx with x-envoy-overloaded is ClassOverloaded. Signals come from env; retryAfter is
// the reply's wait hint.
//
// Auth errors are excluded rather than failures: a 401 or 403 says the caller's
// credentials or the mesh's authorization policy are wrong, not that the endpoint is
// unhealthy. Counting them would let one tenant's bad key open the circuit for every
// caller sharing the policy, and an open circuit cannot fix a key.
func HTTPVerdict(status int, env Envoy, retryAfter time.Duration) breaker.Verdict {
	v := breaker.Verdict{RetryAfter: retryAfter, Signals: env.Signals()}
	failure := func(retryable bool, class breaker.Class) breaker.Verdict {
		v.Outcome, v.Retryable, v.Class = breaker.OutcomeFailure, retryable, class
		return v
	}
	excluded := func(class breaker.Class) breaker.Verdict {
		v.Outcome, v.Class = breaker.OutcomeExcluded, class
		return v
	}
	switch {
	case status < 400:
		v.Outcome = breaker.OutcomeSuccess
		return v
	case status == 401 || status == 403:
		return excluded(breaker.ClassAuth)
	case status == 408:
		return failure(true, breaker.ClassTimeout)
	case status == 429:
		return failure(true, breaker.ClassRateLimited)
	case status < 500:
		return excluded(breaker.ClassClientError)
	case env.NoHealthyUpstream:
		return failure(false, breaker.ClassUnavailable)
	case env.Overloaded || status == 529:
		return failure(true, breaker.ClassOverloaded)
	case status == 501 || status == 505:
		return failure(false, breaker.ClassServerError)
	case status == 503 && (env.ConnectFailure || env.Reset):
		return failure(true, breaker.ClassConnection)
	case status == 503:
		return failure(true, breaker.ClassUnavailable)
	case status == 504:
		return failure(true, breaker.ClassTimeout)
	default:
		return failure(true, breaker.ClassServerError)
	}
}

// ErrorVerdict judges an error that came instead of a reply (an http.RoundTripper's
// error, a broken connection), for every caller in this module. In order:
//
//   - an error that is or wraps a breaker.Verdicter gives its own verdict;
//   - a TLS certificate or handshake error is a failure, not retryable, ClassConnection:
//     the same handshake would fail again;
//   - a DNS "no such host" is a failure, not retryable, ClassConnection;
//   - context errors as breaker.DefaultClassifier judges them (the caller's cancellation
//     excluded, a deadline a retryable ClassTimeout);
//   - a network timeout is a retryable failure, ClassTimeout;
//   - any other connection error (refused, reset, EOF, a closed connection, a dial error)
//     is a retryable failure, ClassConnection;
//   - anything else as breaker.DefaultClassifier judges it: a retryable failure,
//     ClassUnknown.
func ErrorVerdict(err error) breaker.Verdict {
	if err == nil {
		return breaker.Verdict{}
	}
	var vr breaker.Verdicter
	if errors.As(err, &vr) {
		return vr.BreakerVerdict()
	}
	fail := func(retryable bool, class breaker.Class) breaker.Verdict {
		return breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: retryable, Class: class}
	}
	var (
		certErr    *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
		dnsErr     *net.DNSError
		netErr     net.Error
	)
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return breaker.DefaultClassifier(err)
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &invalidErr), errors.As(err, &recordErr), errors.As(err, &alertErr):
		return fail(false, breaker.ClassConnection)
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return fail(false, breaker.ClassConnection)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fail(true, breaker.ClassTimeout)
	case IsConnectionError(err):
		return fail(true, breaker.ClassConnection)
	}
	return breaker.DefaultClassifier(err)
}

// IsConnectionError reports an error of the connection itself: refused, reset, aborted,
// EOF, closed, unreachable, a dial or DNS error.
func IsConnectionError(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// gRPC status codes, as the gRPC protocol numbers them (google.golang.org/grpc/codes).
const (
	grpcCanceled           = 1
	grpcUnknown            = 2
	grpcInvalidArgument    = 3
	grpcDeadlineExceeded   = 4
	grpcNotFound           = 5
	grpcAlreadyExists      = 6
	grpcPermissionDenied   = 7
	grpcResourceExhausted  = 8
	grpcFailedPrecondition = 9
	grpcAborted            = 10
	grpcOutOfRange         = 11
	grpcUnimplemented      = 12
	grpcInternal           = 13
	grpcUnavailable        = 14
	grpcDataLoss           = 15
	grpcUnauthenticated    = 16
)

// GRPCReply is what a gRPC failure looked like, beyond its code.
type GRPCReply struct {
	// Opened: a stream was opened at all (no stream means the connection failed).
	Opened bool
	// TrailersOnly: no response headers arrived, only a status, as Envoy's local replies
	// and shed calls answer.
	TrailersOnly bool
	// Retryable: nothing reached the caller yet, and no pushback forbids a retry.
	Retryable bool
	// RetryAfter is the server's grpc-retry-pushback-ms.
	RetryAfter time.Duration
}

// GRPCVerdict judges a failed gRPC call from its code, the mesh's facts and the shape of
// the reply:
//
//	INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
//	FAILED_PRECONDITION, OUT_OF_RANGE,
//	UNIMPLEMENTED                             excluded, client_error, not retryable
//	UNAUTHENTICATED, PERMISSION_DENIED        excluded, auth, not retryable
//	UNAVAILABLE                               failure, unavailable (connection when no stream
//	                                          could be opened or Envoy reports a connect
//	                                          failure or reset; overloaded when Envoy shed
//	                                          it; not retryable when Envoy has no healthy
//	                                          upstream), retryable before any message
//	RESOURCE_EXHAUSTED                        failure, overloaded, retryable only when no
//	                                          headers and no message arrived (a shed call)
//	DEADLINE_EXCEEDED (server or a per-try)   failure, timeout, retryable before any message
//	ABORTED, CANCELLED (not by the caller)    failure, server_error / connection, retryable
//	                                          before any message
//	INTERNAL, DATA_LOSS, UNKNOWN              failure, server_error / unknown, not retryable
//
// The signals are the mesh's, as for HTTP.
func GRPCVerdict(code uint32, env Envoy, r GRPCReply) breaker.Verdict {
	v := breaker.Verdict{Outcome: breaker.OutcomeFailure, RetryAfter: r.RetryAfter, Signals: env.Signals()}
	switch code {
	case grpcInvalidArgument, grpcNotFound, grpcAlreadyExists, grpcFailedPrecondition, grpcOutOfRange, grpcUnimplemented:
		return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassClientError}
	case grpcUnauthenticated, grpcPermissionDenied:
		return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassAuth}
	case grpcUnavailable:
		v.Class, v.Retryable = breaker.ClassUnavailable, r.Retryable && !env.NoHealthyUpstream
		switch {
		case env.Overloaded:
			v.Class = breaker.ClassOverloaded
		case !r.Opened || (r.TrailersOnly && (env.ConnectFailure || env.Reset)):
			// No stream was ever opened (the connection failed), or Envoy reports that the
			// upstream connection failed before any response: the request never ran.
			v.Class = breaker.ClassConnection
		}
	case grpcResourceExhausted:
		v.Class, v.Retryable = breaker.ClassOverloaded, r.Retryable && r.TrailersOnly
	case grpcDeadlineExceeded:
		v.Class, v.Retryable = breaker.ClassTimeout, r.Retryable
	case grpcAborted:
		v.Class, v.Retryable = breaker.ClassServerError, r.Retryable
	case grpcCanceled:
		v.Class, v.Retryable = breaker.ClassConnection, r.Retryable
	case grpcInternal, grpcDataLoss:
		v.Class = breaker.ClassServerError
	case grpcUnknown:
		v.Class = breaker.ClassUnknown
	default:
		v.Class = breaker.ClassUnknown
	}
	return v
}
