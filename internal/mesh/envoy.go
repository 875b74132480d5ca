// Package mesh owns the facts an Envoy proxy (an Istio sidecar, a gateway) leaves on a
// reply, over HTTP and gRPC, and the verdict a resilience policy draws from a reply: one
// model of mesh signals and outcomes that transport, grpcinfer, tracing and llmclient all
// use, so that they cannot disagree.
package mesh

import (
	"strconv"
	"strings"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

// PeekBytes is the most of a reply body worth reading for a local reply: Envoy's local
// replies are short single lines.
const PeekBytes = 256

// Envoy's local-reply bodies and their parts, as Envoy's router and connection manager
// write them (over gRPC they become the grpc-message of a trailers-only reply).
const (
	resetPrefix     = "upstream connect error or disconnect/reset before headers. "
	retriedReason   = "retried and the latest reset reason: "
	resetReason     = "reset reason: "
	transportSep    = ", transport failure reason: "
	noHealthy       = "no healthy upstream"
	upstreamTimeout = "upstream request timeout"
	maxDuration     = "upstream max stream duration reached"
	overloaded      = "envoy overloaded" // the overload manager's local reply
)

// Envoy holds what an Envoy proxy said about one reply, from its local-reply body and its
// x-envoy-* headers (HTTP) or metadata (gRPC). The zero value means "nothing
// Envoy-specific".
type Envoy struct {
	// LocalReply is the recognised local-reply body (trimmed, at most PeekBytes bytes),
	// or "" when the body is not one of Envoy's local replies.
	LocalReply string

	// Overloaded: Envoy shed the request itself. Set by the x-envoy-overloaded: true
	// header, by reset reason "overflow" (the sidecar's circuit breaker, UO) or "overload
	// manager reset", and by the overload manager's "envoy overloaded" reply. Back off;
	// Envoy's outlier detection does not count it against the upstream.
	Overloaded bool

	// NoHealthyUpstream: 503 "no healthy upstream" (UH): every endpoint is ejected or
	// none exists. Retrying soon is pointless; fail over.
	NoHealthyUpstream bool

	// ConnectFailure: the upstream connection could not be made (reset reasons
	// "connection failure", "local connection failure", "remote connection failure",
	// "connection timeout"; UF). The request never reached the upstream.
	ConnectFailure bool

	// Reset: 503 "upstream connect error or disconnect/reset before headers" with any
	// reset reason (UF/UC/UR/LR/UO): the upstream sent no response headers. ResetReason
	// says why.
	Reset bool

	// ResetReason is the reset reason from the body ("connection termination", "remote
	// reset", "overflow", ...), or "".
	ResetReason string

	// TransportFailureReason is Envoy's transport failure detail after the reset reason
	// ("delayed connect error: 111", a TLS error), possibly cut at the peek limit, or "".
	TransportFailureReason string

	// UpstreamTimeout: 504 "upstream request timeout" (UT), the route timeout fired;
	// also set for "upstream max stream duration reached".
	UpstreamTimeout bool

	// Retried: the mesh already retried the request (AttemptCount > 1, or the body says
	// "retried and the latest reset reason"). The application must not multiply those
	// retries.
	Retried bool

	// RateLimited: x-envoy-ratelimited is present (Envoy's rate limit filter answered).
	RateLimited bool

	// AttemptCount is x-envoy-attempt-count (Envoy sends it when the route asks for it),
	// or 0.
	AttemptCount int

	// UpstreamServiceTime is x-envoy-upstream-service-time, the time the upstream took
	// as Envoy measured it; the difference to the client's own timing is the proxy cost.
	// Zero when absent.
	UpstreamServiceTime time.Duration
}

// Any reports whether e carries any Envoy signal or header value.
func (e Envoy) Any() bool { return e != Envoy{} }

// Signals are the facts a breaker policy acts on.
func (e Envoy) Signals() breaker.Signals {
	return breaker.Signals{
		MeshRetried:       e.Retried || e.AttemptCount > 1,
		NoHealthyUpstream: e.NoHealthyUpstream,
		Overloaded:        e.Overloaded,
	}
}

// ParseHeaders reads Envoy's x-envoy-* headers (HTTP) or metadata (gRPC) through get,
// which returns a header's value or "" (for gRPC, the last value). get is asked for the
// canonical HTTP names ("X-Envoy-Overloaded"), which http.Header looks up without a copy;
// a gRPC getter lower-cases them.
func ParseHeaders(get func(key string) string) Envoy {
	var e Envoy
	if strings.EqualFold(strings.TrimSpace(get("X-Envoy-Overloaded")), "true") {
		e.Overloaded = true
	}
	if get("X-Envoy-Ratelimited") != "" {
		e.RateLimited = true
	}
	if n, ok := smallUint(get("X-Envoy-Attempt-Count")); ok {
		e.AttemptCount = int(n)
	}
	if ms, ok := smallUint(get("X-Envoy-Upstream-Service-Time")); ok {
		e.UpstreamServiceTime = time.Duration(ms) * time.Millisecond
	}
	if e.AttemptCount > 1 {
		e.Retried = true
	}
	return e
}

// smallUint parses a non-negative decimal integer of at most 9 digits (so it fits an int
// on every platform and in milliseconds as a Duration).
func smallUint(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 9 || s[0] == '+' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// IsLocalReplyStatus reports the HTTP statuses Envoy's local replies come with, the only
// ones whose body is worth peeking at.
func IsLocalReplyStatus(status int) bool { return status == 503 || status == 504 }

// ParseLocalReply reads a local-reply body into e: an HTTP 503 or 504 text/plain body,
// or the grpc-message of a trailers-only UNAVAILABLE (pass 503 for it, as Envoy maps its
// 503 and 504 replies to UNAVAILABLE).
func (e *Envoy) ParseLocalReply(status int, body string) {
	s := strings.TrimSpace(body)
	if len(s) > PeekBytes {
		s = s[:PeekBytes]
	}
	switch {
	case status == 503 && strings.HasPrefix(s, resetPrefix):
		e.LocalReply, e.Reset = s, true
		rest := s[len(resetPrefix):]
		switch {
		case strings.HasPrefix(rest, retriedReason):
			e.Retried = true
			rest = rest[len(retriedReason):]
		case strings.HasPrefix(rest, resetReason):
			rest = rest[len(resetReason):]
		default:
			return
		}
		reason, detail, _ := strings.Cut(rest, transportSep)
		e.ResetReason, e.TransportFailureReason = strings.TrimSpace(reason), strings.TrimSpace(detail)
		switch e.ResetReason {
		case "overflow", "overload manager reset":
			e.Overloaded = true
		case "connection failure", "local connection failure", "remote connection failure", "connection timeout":
			e.ConnectFailure = true
		}
	case status == 503 && s == noHealthy:
		e.LocalReply, e.NoHealthyUpstream = s, true
	case status == 503 && s == overloaded:
		e.LocalReply, e.Overloaded = s, true
	case status == 504 && (s == upstreamTimeout || s == maxDuration):
		e.LocalReply, e.UpstreamTimeout = s, true
	}
}
