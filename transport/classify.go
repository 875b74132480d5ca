package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

// StatusError is an HTTP response that did not succeed, as an error a [breaker.Policy] can
// classify: it implements [breaker.Verdicter]. Its message names the status, Envoy's reason and
// the wait hint; it never includes request headers, the URL or the body beyond Envoy's own
// local reply.
type StatusError struct {
	// StatusCode is the response status code.
	StatusCode int
	// Envoy is what the mesh said about the response.
	Envoy Envoy
	// RetryAfter is the server's wait hint; zero means none.
	RetryAfter time.Duration
}

var _ breaker.Verdicter = (*StatusError)(nil)

// NewStatusError returns the StatusError for resp, reading Envoy's signals with [ParseEnvoy]
// (which restores any body bytes it peeks at) and the wait hint with [ParseRetryAfter]. It
// does not close resp.Body.
func NewStatusError(resp *http.Response) *StatusError {
	ra, _ := ParseRetryAfter(resp.Header, time.Now())
	return &StatusError{StatusCode: resp.StatusCode, Envoy: ParseEnvoy(resp), RetryAfter: ra}
}

// Error returns a message such as
// `transport: HTTP 503 Service Unavailable: envoy: "no healthy upstream"`.
func (e *StatusError) Error() string {
	var b strings.Builder
	b.WriteString("transport: HTTP ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteString(" ")
		b.WriteString(t)
	}
	switch {
	case e.Envoy.LocalReply != "":
		b.WriteString(": envoy: ")
		b.WriteString(strconv.Quote(e.Envoy.LocalReply))
	case e.Envoy.Overloaded:
		b.WriteString(": envoy overloaded")
	}
	if e.Envoy.AttemptCount > 1 {
		fmt.Fprintf(&b, " (mesh attempts: %d)", e.Envoy.AttemptCount)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %v)", e.RetryAfter)
	}
	return b.String()
}

// BreakerVerdict implements [breaker.Verdicter], with the rules of [ClassifyResponse].
func (e *StatusError) BreakerVerdict() breaker.Verdict {
	return verdictFor(e.StatusCode, e.Envoy, e.RetryAfter)
}

// ClassifyResponse judges an HTTP response for a [breaker.Policy]:
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
// Any 5xx with x-envoy-overloaded is ClassOverloaded. Signals.MeshRetried is set when the mesh
// already retried ([Envoy.Retried]); Retryable still describes the status, and the policy
// declines to retry on top. RetryAfter is the Retry-After / retry-after-ms hint.
//
// Auth errors are excluded rather than failures: a 401 or 403 says the caller's credentials
// or the mesh's authorization policy are wrong, not that the endpoint is unhealthy. Counting
// them would let one tenant's bad key open the circuit for every caller sharing the policy,
// and an open circuit cannot fix a key. They are not retryable, and ClassAuth lets a fallback
// act on them.
//
// ClassifyResponse may peek at the body (see [ParseEnvoy]); the body stays readable in full.
func ClassifyResponse(resp *http.Response) breaker.Verdict {
	ra, _ := ParseRetryAfter(resp.Header, time.Now())
	return verdictFor(resp.StatusCode, ParseEnvoy(resp), ra)
}

func verdictFor(code int, env Envoy, retryAfter time.Duration) breaker.Verdict {
	v := breaker.Verdict{
		RetryAfter: retryAfter,
		Signals: breaker.Signals{
			MeshRetried:       env.Retried || env.AttemptCount > 1,
			NoHealthyUpstream: env.NoHealthyUpstream,
			Overloaded:        env.Overloaded,
		},
	}
	failure := func(retryable bool, class breaker.Class) breaker.Verdict {
		v.Outcome, v.Retryable, v.Class = breaker.OutcomeFailure, retryable, class
		return v
	}
	excluded := func(class breaker.Class) breaker.Verdict {
		v.Outcome, v.Class = breaker.OutcomeExcluded, class
		return v
	}
	switch {
	case code < 400:
		v.Outcome = breaker.OutcomeSuccess
		return v
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return excluded(breaker.ClassAuth)
	case code == http.StatusRequestTimeout:
		return failure(true, breaker.ClassTimeout)
	case code == http.StatusTooManyRequests:
		return failure(true, breaker.ClassRateLimited)
	case code < 500:
		return excluded(breaker.ClassClientError)
	case env.NoHealthyUpstream:
		return failure(false, breaker.ClassUnavailable)
	case env.Overloaded || code == 529:
		return failure(true, breaker.ClassOverloaded)
	case code == http.StatusNotImplemented || code == http.StatusHTTPVersionNotSupported:
		return failure(false, breaker.ClassServerError)
	case code == http.StatusServiceUnavailable && (env.ConnectFailure || env.Reset):
		return failure(true, breaker.ClassConnection)
	case code == http.StatusServiceUnavailable:
		return failure(true, breaker.ClassUnavailable)
	case code == http.StatusGatewayTimeout:
		return failure(true, breaker.ClassTimeout)
	default:
		return failure(true, breaker.ClassServerError)
	}
}

// Classify is a [breaker.Classifier] for errors from HTTP calls; set it as
// breaker.Config.Classifier. A nil error is a success. In order:
//
//   - an error that is or wraps a [breaker.Verdicter] ([*StatusError], [*BodyError],
//     [*DecompressionLimitError], or any other) gives its own verdict;
//   - context.Canceled (the caller cancelled) is excluded, not retryable, ClassCanceled;
//   - context.DeadlineExceeded or a timeout (dial, TLS handshake, response headers) is a
//     retryable failure, ClassTimeout;
//   - a TLS certificate or handshake error is a failure, not retryable, ClassConnection: the
//     same handshake would fail again;
//   - a DNS "no such host" is a failure, not retryable, ClassConnection;
//   - any other connection error before a response (refused, reset, EOF, a closed connection,
//     a dial or DNS error) is a retryable failure, ClassConnection: an [http.RoundTripper]
//     returns an error only when it obtained no response;
//   - anything else is a failure, not retryable, ClassUnknown.
//
// An error that happened after the response headers (while reading the body, a stream cut by
// the mesh) must not be retried at this layer, because the upstream may have done the work:
// wrap it in a [*BodyError] (or use [MarkBodyErrors]) so that Classify sees it as such.
func Classify(err error) breaker.Verdict {
	if err == nil {
		return breaker.Verdict{}
	}
	var vr breaker.Verdicter
	if errors.As(err, &vr) {
		return vr.BreakerVerdict()
	}
	return classifyTransportError(err)
}

func classifyTransportError(err error) breaker.Verdict {
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
	case errors.Is(err, context.Canceled):
		return breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassCanceled}
	case errors.Is(err, context.DeadlineExceeded):
		return fail(true, breaker.ClassTimeout)
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &invalidErr), errors.As(err, &recordErr), errors.As(err, &alertErr):
		return fail(false, breaker.ClassConnection)
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return fail(false, breaker.ClassConnection)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fail(true, breaker.ClassTimeout)
	case isConnectionError(err):
		return fail(true, breaker.ClassConnection)
	}
	return fail(false, breaker.ClassUnknown)
}

func isConnectionError(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// BodyError marks an error that happened after the response headers arrived: reading the
// body failed, or a stream was cut (by the upstream, or by the mesh resetting the stream).
// The upstream may already have done the work, so it is never retryable at this layer.
type BodyError struct {
	// Err is the underlying read error.
	Err error
}

var _ breaker.Verdicter = (*BodyError)(nil)

// Error returns "transport: reading response body: " and Err's message.
func (e *BodyError) Error() string { return "transport: reading response body: " + e.Err.Error() }

// Unwrap returns Err.
func (e *BodyError) Unwrap() error { return e.Err }

// BreakerVerdict implements [breaker.Verdicter]: the caller's cancellation is excluded;
// otherwise a failure that is never retryable, of the class the underlying error has
// (ClassTimeout for a timeout, ClassConnection for a cut connection).
func (e *BodyError) BreakerVerdict() breaker.Verdict {
	var v breaker.Verdict
	var vr breaker.Verdicter
	if errors.As(e.Err, &vr) {
		v = vr.BreakerVerdict()
	} else {
		v = classifyTransportError(e.Err)
		if v.Class == breaker.ClassUnknown {
			v.Class = breaker.ClassConnection
		}
	}
	v.Retryable = false
	return v
}

// MarkBodyErrors replaces resp.Body with a reader that returns every read error other than
// io.EOF wrapped in a [*BodyError], so that [Classify] (and breaker's default classifier)
// never retry a call whose response had already started.
func MarkBodyErrors(resp *http.Response) {
	if resp == nil || resp.Body == nil || resp.Body == http.NoBody {
		return
	}
	resp.Body = &markedBody{rc: resp.Body}
}

type markedBody struct{ rc io.ReadCloser }

func (b *markedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		var be *BodyError
		if !errors.As(err, &be) {
			err = &BodyError{Err: err}
		}
	}
	return n, err
}

func (b *markedBody) Close() error { return b.rc.Close() }

// BreakerVerdict implements [breaker.Verdicter]: a body that decodes past its cap is the
// server's failure, and not retryable (it would send the same body again).
func (e *DecompressionLimitError) BreakerVerdict() breaker.Verdict {
	return breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassServerError}
}
