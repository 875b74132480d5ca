package transport

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/mesh"
)

// StatusError is an HTTP response that did not succeed, as an error a [breaker.Policy] can
// classify: it implements [breaker.Verdicter]. Use it to judge your own HTTP calls with a
// policy. Its message names the status, Envoy's reason and the wait hint; it never includes
// request headers, the URL or the body beyond Envoy's own local reply.
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
	return mesh.HTTPVerdict(e.StatusCode, e.Envoy, e.RetryAfter)
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
	return mesh.HTTPVerdict(resp.StatusCode, ParseEnvoy(resp), ra)
}

// Classify is a [breaker.Classifier] for errors from HTTP calls; set it as
// breaker.Config.Classifier. A nil error is a success. In order:
//
//   - an error that is or wraps a [breaker.Verdicter] ([*BodyError],
//     [*DecompressionLimitError], or any other) gives its own verdict;
//   - a TLS certificate or handshake error is a failure, not retryable, ClassConnection: the
//     same handshake would fail again;
//   - a DNS "no such host" is a failure, not retryable, ClassConnection;
//   - context.Canceled (the caller cancelled) is excluded, not retryable, ClassCanceled;
//     context.DeadlineExceeded or a timeout (dial, TLS handshake, response headers) is a
//     retryable failure, ClassTimeout;
//   - any other connection error before a response (refused, reset, EOF, a closed connection,
//     a dial or DNS error) is a retryable failure, ClassConnection: an [http.RoundTripper]
//     returns an error only when it obtained no response;
//   - anything else as [breaker.DefaultClassifier] judges it: a retryable failure,
//     ClassUnknown.
//
// An error that happened after the response headers (while reading the body, a stream cut by
// the mesh) must not be retried at this layer, because the upstream may have done the work:
// wrap it in a [*BodyError] so that Classify sees it as such.
func Classify(err error) breaker.Verdict { return mesh.ErrorVerdict(err) }

// BodyError marks an error that happened after the response headers arrived: reading the
// body failed, or a stream was cut (by the upstream, or by the mesh resetting the stream).
// The upstream may already have done the work (and billed it), so it is never retryable.
type BodyError struct {
	// Err is the underlying read error.
	Err error
}

var _ breaker.Verdicter = (*BodyError)(nil)

// Error says that the body broke after the upstream answered, and why.
func (e *BodyError) Error() string {
	return "transport: response body broken after the upstream answered: " + e.Err.Error()
}

// Unwrap returns Err.
func (e *BodyError) Unwrap() error { return e.Err }

// BreakerVerdict implements [breaker.Verdicter]: the caller's cancellation is excluded;
// otherwise a failure that is never retryable, of the class the underlying error has
// (ClassTimeout for a timeout, ClassConnection for a cut connection).
func (e *BodyError) BreakerVerdict() breaker.Verdict {
	v := mesh.ErrorVerdict(e.Err)
	var vr breaker.Verdicter
	if v.Class == breaker.ClassUnknown && !errors.As(e.Err, &vr) {
		v.Class = breaker.ClassConnection
	}
	v.Retryable = false
	return v
}

// BreakerVerdict implements [breaker.Verdicter]: a body that decodes past its cap is the
// server's failure, and not retryable (it would send the same body again).
func (e *DecompressionLimitError) BreakerVerdict() breaker.Verdict {
	return breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassServerError}
}
