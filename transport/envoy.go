package transport

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/infermesh/infermesh/internal/header"
)

// EnvoyPeekBytes is the most ParseEnvoy reads from a response body. Envoy's local replies are
// short single lines; reading a bounded prefix keeps ParseEnvoy cheap on any body.
const EnvoyPeekBytes = 256

// Envoy local-reply bodies and their parts, as Envoy's router and connection manager write them.
const (
	envoyResetPrefix   = "upstream connect error or disconnect/reset before headers. "
	envoyRetriedReason = "retried and the latest reset reason: "
	envoyResetReason   = "reset reason: "
	envoyTransportSep  = ", transport failure reason: "
	envoyNoHealthy     = "no healthy upstream"
	envoyTimeout       = "upstream request timeout"
	envoyMaxDuration   = "upstream max stream duration reached"
	envoyOverloaded    = "envoy overloaded" // the overload manager's local reply
)

// Envoy holds what an Envoy proxy (an Istio sidecar, a gateway) said about a response, from its
// local-reply body and its x-envoy-* headers. The zero value means "nothing Envoy-specific".
type Envoy struct {
	// LocalReply is the recognised local-reply body (trimmed, at most [EnvoyPeekBytes] bytes),
	// or "" when the body is not one of Envoy's local replies.
	LocalReply string

	// Overloaded: Envoy shed the request itself. Set by the x-envoy-overloaded: true header,
	// by reset reason "overflow" (the sidecar's circuit breaker, UO) or "overload manager
	// reset", and by the overload manager's "envoy overloaded" reply. Back off; Envoy's outlier
	// detection does not count it against the upstream.
	Overloaded bool

	// NoHealthyUpstream: 503 "no healthy upstream" (UH): every endpoint is ejected or none
	// exists. Retrying soon is pointless; fail over.
	NoHealthyUpstream bool

	// ConnectFailure: the upstream connection could not be made (reset reasons "connection
	// failure", "local connection failure", "remote connection failure", "connection timeout";
	// UF). The request never reached the upstream.
	ConnectFailure bool

	// Reset: 503 "upstream connect error or disconnect/reset before headers" with any reset
	// reason (UF/UC/UR/LR/UO): the upstream sent no response headers. ResetReason says why.
	Reset bool

	// ResetReason is the reset reason from the body ("connection termination", "remote reset",
	// "overflow", ...), or "".
	ResetReason string

	// TransportFailureReason is Envoy's transport failure detail after the reset reason
	// ("delayed connect error: 111", a TLS error), possibly cut at the peek limit, or "".
	TransportFailureReason string

	// UpstreamTimeout: 504 "upstream request timeout" (UT), the route timeout fired; also set
	// for "upstream max stream duration reached".
	UpstreamTimeout bool

	// Retried: the mesh already retried the request (AttemptCount > 1, or the body says
	// "retried and the latest reset reason"). The application must not multiply those retries.
	Retried bool

	// RateLimited: x-envoy-ratelimited is present (Envoy's rate limit filter answered 429).
	RateLimited bool

	// AttemptCount is x-envoy-attempt-count (Envoy sends it when the route asks for it), or 0.
	AttemptCount int

	// UpstreamServiceTime is x-envoy-upstream-service-time, the time the upstream took as
	// Envoy measured it; the difference to the client's own timing is the proxy cost. Zero
	// when absent.
	UpstreamServiceTime time.Duration
}

// Any reports whether e carries any Envoy signal or header value.
func (e Envoy) Any() bool { return e != Envoy{} }

// ParseEnvoy reads Envoy's signals from resp.
//
// Headers are always read. The body is examined only for local-reply shapes: status 503 or
// 504 with a text/plain content type. Then at most [EnvoyPeekBytes] bytes are read and put
// back: resp.Body is replaced by a reader that yields the peeked bytes followed by the rest of
// the original body, and closing it closes the original. The caller still reads the whole
// body. ParseEnvoy may block until those bytes arrive or the body ends; a body read error
// during the peek is returned again by the restored body. ParseEnvoy is not safe to call
// concurrently with reads of resp.Body.
func ParseEnvoy(resp *http.Response) Envoy {
	var e Envoy
	if resp == nil {
		return e
	}
	parseEnvoyHeaders(resp.Header, &e)
	if (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout) &&
		isTextPlain(header.Get(resp.Header, "Content-Type")) && resp.Body != nil && resp.Body != http.NoBody {
		prefix := peekBody(resp)
		parseEnvoyBody(resp.StatusCode, prefix, &e)
	}
	if e.AttemptCount > 1 {
		e.Retried = true
	}
	return e
}

func parseEnvoyHeaders(h http.Header, e *Envoy) {
	if strings.EqualFold(strings.TrimSpace(header.Get(h, "X-Envoy-Overloaded")), "true") {
		e.Overloaded = true
	}
	if len(h["X-Envoy-Ratelimited"]) > 0 {
		e.RateLimited = true
	}
	if n, ok := parseSmallUint(header.Get(h, "X-Envoy-Attempt-Count")); ok {
		e.AttemptCount = int(n)
	}
	if ms, ok := parseSmallUint(header.Get(h, "X-Envoy-Upstream-Service-Time")); ok {
		e.UpstreamServiceTime = time.Duration(ms) * time.Millisecond
	}
}

// parseSmallUint parses a non-negative decimal integer of at most 9 digits (so it fits an int
// on every platform and in milliseconds as a Duration).
func parseSmallUint(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || s[0] == '+' {
		return 0, false
	}
	return n, true
}

func isTextPlain(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/plain"
}

// peekBody reads up to EnvoyPeekBytes of resp.Body and restores them in front of the rest.
func peekBody(resp *http.Response) []byte {
	buf := make([]byte, EnvoyPeekBytes)
	n, err := io.ReadFull(resp.Body, buf)
	buf = buf[:n]
	orig := resp.Body
	var rest io.Reader = orig
	switch err {
	case nil:
	case io.EOF, io.ErrUnexpectedEOF:
		rest = eofReader{} // the body ended within the peek
	default:
		rest = &errReader{err: err} // hand the read error to the caller, once the prefix is read
	}
	resp.Body = &restoredBody{Reader: io.MultiReader(bytes.NewReader(buf), rest), closer: orig}
	return buf
}

type restoredBody struct {
	io.Reader
	closer io.Closer
}

func (b *restoredBody) Close() error { return b.closer.Close() }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

func parseEnvoyBody(status int, body []byte, e *Envoy) {
	s := strings.TrimSpace(string(body))
	switch {
	case status == http.StatusServiceUnavailable && strings.HasPrefix(s, envoyResetPrefix):
		e.LocalReply = s
		e.Reset = true
		rest := s[len(envoyResetPrefix):]
		switch {
		case strings.HasPrefix(rest, envoyRetriedReason):
			e.Retried = true
			rest = rest[len(envoyRetriedReason):]
		case strings.HasPrefix(rest, envoyResetReason):
			rest = rest[len(envoyResetReason):]
		default:
			return
		}
		reason, transport, _ := strings.Cut(rest, envoyTransportSep)
		e.ResetReason = strings.TrimSpace(reason)
		e.TransportFailureReason = strings.TrimSpace(transport)
		switch e.ResetReason {
		case "overflow", "overload manager reset":
			e.Overloaded = true
		case "connection failure", "local connection failure", "remote connection failure", "connection timeout":
			e.ConnectFailure = true
		}
	case status == http.StatusServiceUnavailable && s == envoyNoHealthy:
		e.LocalReply = s
		e.NoHealthyUpstream = true
	case status == http.StatusServiceUnavailable && s == envoyOverloaded:
		e.LocalReply = s
		e.Overloaded = true
	case status == http.StatusGatewayTimeout && (s == envoyTimeout || s == envoyMaxDuration):
		e.LocalReply = s
		e.UpstreamTimeout = true
	}
}
