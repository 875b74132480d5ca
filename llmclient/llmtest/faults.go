package llmtest

import (
	"fmt"
	"net/http"
	"time"
)

// Kind says what a [Fault] does to a response.
type Kind int

// The fault kinds. "Content chunks" are the SSE events that carry completion text; the role
// chunk that opens a chat stream, the finish chunk and the usage chunk are not content chunks.
const (
	// KindNone is the normal response. A Fault of this kind still decorates the response with
	// its headers (RetryAfter, UpstreamServiceTime, AttemptCount, Header).
	KindNone Kind = iota
	// KindStatus answers Fault.Status (400 to 599; 0 means 500) with an OpenAI-shaped JSON error
	// body, such as {"error":{"message":"...","type":"server_error","param":null,"code":null}}.
	KindStatus
	// KindEnvoyOverflow is the local reply of an Envoy sidecar whose circuit breaker is full:
	// 503, x-envoy-overloaded: true, text/plain body
	// "upstream connect error or disconnect/reset before headers. reset reason: overflow".
	KindEnvoyOverflow
	// KindEnvoyNoHealthyUpstream is Envoy's 503 "no healthy upstream" (every endpoint ejected).
	KindEnvoyNoHealthyUpstream
	// KindEnvoyConnectFailure is Envoy's 503
	// "upstream connect error or disconnect/reset before headers. reset reason: connection failure".
	KindEnvoyConnectFailure
	// KindEnvoyUpstreamTimeout is Envoy's 504 "upstream request timeout" (the route timeout fired).
	KindEnvoyUpstreamTimeout
	// KindReset closes the connection before any response byte is written. On TCP the close
	// discards unsent data (SO_LINGER 0), so the client reads a reset or EOF.
	KindReset
	// KindStreamReset cuts the response after its headers: a stream dies after Fault.AfterChunks
	// content chunks (no finish chunk, no [DONE]); a JSON body dies halfway through the bytes
	// its Content-Length announced. The client reads an unexpected EOF.
	KindStreamReset
	// KindStallBeforeHeaders waits Fault.Duration before writing anything (0: until the client
	// gives up or the server closes), then answers normally.
	KindStallBeforeHeaders
	// KindStall sends the status and headers, and in a stream the role chunk (unless
	// Fault.HeadersOnly) and Fault.AfterChunks content chunks, then waits Fault.Duration
	// (0: until the client gives up or the server closes), then finishes normally.
	// With AfterChunks 0 it is a stall before the first content chunk; above 0, between chunks.
	KindStall
	// KindErrorEvent answers 200 and carries an error object (by default
	// {"message":"Overloaded","type":"overloaded_error",...}): a stream sends it as an SSE event
	// after Fault.AfterChunks content chunks and ends without [DONE]; a JSON response is a body
	// holding only {"error":{...}}.
	KindErrorEvent
	// KindMalformedJSON answers 200 with JSON that does not parse: a JSON response is the first
	// half of the real body; a stream sends Fault.AfterChunks content chunks, then an event
	// holding the first half of a chunk, and ends.
	KindMalformedJSON
	// KindOversized answers 200 with an oversized but valid body: a JSON response is padded with
	// Fault.Size bytes of whitespace inside its top-level object; a stream sends, after
	// Fault.AfterChunks content chunks, one extra content chunk holding Fault.Size bytes of text.
	// Size 0 means [DefaultOversizedBytes]. Usage is not changed by the padding.
	KindOversized

	kindCount // the number of kinds; keep last
)

// DefaultOversizedBytes is the padding of a [KindOversized] fault whose Size is 0.
const DefaultOversizedBytes = 16 << 20

// maxOversizedBytes bounds Fault.Size so that a typo cannot exhaust memory.
const maxOversizedBytes = 1 << 30

var kindNames = [...]string{
	KindNone:                   "none",
	KindStatus:                 "status",
	KindEnvoyOverflow:          "envoy-overflow",
	KindEnvoyNoHealthyUpstream: "envoy-no-healthy-upstream",
	KindEnvoyConnectFailure:    "envoy-connect-failure",
	KindEnvoyUpstreamTimeout:   "envoy-upstream-timeout",
	KindReset:                  "reset",
	KindStreamReset:            "stream-reset",
	KindStallBeforeHeaders:     "stall-before-headers",
	KindStall:                  "stall",
	KindErrorEvent:             "error-event",
	KindMalformedJSON:          "malformed-json",
	KindOversized:              "oversized",
}

// String returns the kind's name, such as "envoy-overflow".
func (k Kind) String() string {
	if k >= 0 && k < kindCount {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// RetryAfterFormat says how a [Fault] writes its RetryAfter hint.
type RetryAfterFormat int

const (
	// RetryAfterSeconds writes "Retry-After: <seconds>", rounded up to whole seconds.
	RetryAfterSeconds RetryAfterFormat = iota
	// RetryAfterDate writes Retry-After as an HTTP date: now + RetryAfter, rounded up to the
	// next whole second (HTTP dates have no fractions).
	RetryAfterDate
	// RetryAfterMillis writes only "retry-after-ms: <milliseconds>".
	RetryAfterMillis
	// RetryAfterSecondsAndMillis writes both Retry-After (seconds) and retry-after-ms, as the
	// OpenAI and Azure OpenAI APIs do.
	RetryAfterSecondsAndMillis

	retryAfterFormatCount
)

// A Fault describes what the server does to one response. The zero Fault is the normal
// response. Kind picks the behaviour; the other fields refine it and are ignored by kinds that
// do not use them. The header fields (RetryAfter, UpstreamServiceTime, AttemptCount, Header)
// decorate every kind that writes response headers, including [KindNone].
//
// The constructors ([Status], [EnvoyOverflow], [Reset], [StallAfter], ...) return ready-made
// Faults; set or chain ([Fault.WithRetryAfter], [Fault.WithEnvoyHeaders]) the rest.
type Fault struct {
	// Kind is what happens; the zero value is [KindNone].
	Kind Kind
	// Status is the HTTP status of a [KindStatus] fault, 400 to 599; 0 means 500.
	Status int
	// Message, Type, Code and Param replace the fields of the error object written by
	// [KindStatus] and [KindErrorEvent]. Empty means the default for the status (see [Status])
	// or, for KindErrorEvent, "Overloaded" / "overloaded_error"; an empty Code or Param is
	// written as null.
	Message, Type, Code, Param string
	// AfterChunks is the number of content chunks a stream sends before a KindStreamReset,
	// KindStall, KindErrorEvent, KindMalformedJSON or KindOversized fault strikes. A value
	// above the response's chunk count strikes after the last content chunk.
	AfterChunks int
	// Duration bounds a KindStall or KindStallBeforeHeaders fault: after it the response
	// continues normally. 0 stalls until the client gives up (its request context ends) or
	// the server closes.
	Duration time.Duration
	// HeadersOnly makes a KindStall with AfterChunks 0 on a chat stream stall before the role
	// chunk, so that only the status and headers have been sent.
	HeadersOnly bool
	// Size is the padding of a KindOversized fault in bytes; 0 means [DefaultOversizedBytes].
	Size int
	// RetryAfter, if above 0, adds a retry hint to the response, written as RetryAfterFormat
	// says.
	RetryAfter time.Duration
	// RetryAfterFormat is how RetryAfter is written; the zero value is [RetryAfterSeconds].
	RetryAfterFormat RetryAfterFormat
	// UpstreamServiceTime, if above 0, adds x-envoy-upstream-service-time (in whole
	// milliseconds), as a sidecar does on responses it proxied.
	UpstreamServiceTime time.Duration
	// AttemptCount, if above 0, adds x-envoy-attempt-count: a value above 1 says the mesh
	// already retried the request.
	AttemptCount int
	// Header holds extra response headers, set after all others (so they can override them).
	Header http.Header
}

// Status returns a [KindStatus] fault: the HTTP status code with an OpenAI-shaped error body.
// The default error objects are, by code:
//
//	429: "Rate limit reached for requests", type "requests", code "rate_limit_exceeded"
//	500: "The server had an error while processing your request. Sorry about that!", type "server_error"
//	502: "Bad gateway.", type "server_error"
//	503: "The server is overloaded or not ready yet.", type "server_error"
//	504: "Gateway timeout.", type "server_error"
//	other 4xx: the status text, type "invalid_request_error"; other 5xx: the status text, type "server_error"
func Status(code int) Fault { return Fault{Kind: KindStatus, Status: code} }

// EnvoyOverflow returns a [KindEnvoyOverflow] fault (503, x-envoy-overloaded).
func EnvoyOverflow() Fault { return Fault{Kind: KindEnvoyOverflow} }

// EnvoyNoHealthyUpstream returns a [KindEnvoyNoHealthyUpstream] fault (503 "no healthy upstream").
func EnvoyNoHealthyUpstream() Fault { return Fault{Kind: KindEnvoyNoHealthyUpstream} }

// EnvoyConnectFailure returns a [KindEnvoyConnectFailure] fault (503, connection failure).
func EnvoyConnectFailure() Fault { return Fault{Kind: KindEnvoyConnectFailure} }

// EnvoyUpstreamTimeout returns a [KindEnvoyUpstreamTimeout] fault (504 "upstream request timeout").
func EnvoyUpstreamTimeout() Fault { return Fault{Kind: KindEnvoyUpstreamTimeout} }

// Reset returns a [KindReset] fault: the connection is closed before the headers.
func Reset() Fault { return Fault{Kind: KindReset} }

// ResetAfter returns a [KindStreamReset] fault: a stream dies after the given number of
// content chunks (a JSON body dies halfway).
func ResetAfter(chunks int) Fault { return Fault{Kind: KindStreamReset, AfterChunks: chunks} }

// StallBeforeHeaders returns a [KindStallBeforeHeaders] fault lasting d (0: until the client
// gives up).
func StallBeforeHeaders(d time.Duration) Fault {
	return Fault{Kind: KindStallBeforeHeaders, Duration: d}
}

// StallBeforeFirstChunk returns a [KindStall] fault that stalls for d (0: until the client gives
// up) once the headers and the role chunk are sent, before the first content chunk.
func StallBeforeFirstChunk(d time.Duration) Fault { return Fault{Kind: KindStall, Duration: d} }

// StallAfter returns a [KindStall] fault that stalls for d (0: until the client gives up) after
// the given number of content chunks.
func StallAfter(chunks int, d time.Duration) Fault {
	return Fault{Kind: KindStall, AfterChunks: chunks, Duration: d}
}

// ErrorEvent returns a [KindErrorEvent] fault: a 200 response carrying an "Overloaded" error
// object, in a stream after the given number of content chunks.
func ErrorEvent(chunks int) Fault { return Fault{Kind: KindErrorEvent, AfterChunks: chunks} }

// MalformedJSON returns a [KindMalformedJSON] fault: a 200 response whose JSON (in a stream,
// the event after the given number of content chunks) does not parse.
func MalformedJSON(chunks int) Fault { return Fault{Kind: KindMalformedJSON, AfterChunks: chunks} }

// Oversized returns a [KindOversized] fault padding the response with size bytes
// (0: [DefaultOversizedBytes]).
func Oversized(size int) Fault { return Fault{Kind: KindOversized, Size: size} }

// Envoy returns a [KindNone] fault that only adds the headers an Envoy sidecar puts on the
// responses it proxies: x-envoy-upstream-service-time (if upstream > 0) and
// x-envoy-attempt-count (if attempts > 0).
func Envoy(upstream time.Duration, attempts int) Fault {
	return Fault{UpstreamServiceTime: upstream, AttemptCount: attempts}
}

// WithRetryAfter returns a copy of f that adds a retry hint of d, written in the given format.
func (f Fault) WithRetryAfter(d time.Duration, format RetryAfterFormat) Fault {
	f.RetryAfter, f.RetryAfterFormat = d, format
	return f
}

// WithEnvoyHeaders returns a copy of f that adds x-envoy-upstream-service-time (if
// upstream > 0) and x-envoy-attempt-count (if attempts > 0).
func (f Fault) WithEnvoyHeaders(upstream time.Duration, attempts int) Fault {
	f.UpstreamServiceTime, f.AttemptCount = upstream, attempts
	return f
}

// WithHeader returns a copy of f that also sets the response header key to value.
func (f Fault) WithHeader(key, value string) Fault {
	h := f.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	h.Set(key, value)
	f.Header = h
	return f
}

// Validate reports the first field of f that holds an invalid value, naming the field and
// the value.
func (f Fault) Validate() error {
	switch {
	case f.Kind < 0 || f.Kind >= kindCount:
		return fmt.Errorf("llmtest: Fault.Kind %d is not a known kind", int(f.Kind))
	case f.Kind == KindStatus && f.Status != 0 && (f.Status < 400 || f.Status > 599):
		return fmt.Errorf("llmtest: Fault.Status %d is not an error status (400 to 599)", f.Status)
	case f.AfterChunks < 0:
		return fmt.Errorf("llmtest: Fault.AfterChunks %d is negative", f.AfterChunks)
	case f.Duration < 0:
		return fmt.Errorf("llmtest: Fault.Duration %v is negative", f.Duration)
	case f.Size < 0 || f.Size > maxOversizedBytes:
		return fmt.Errorf("llmtest: Fault.Size %d is outside 0 to %d", f.Size, maxOversizedBytes)
	case f.RetryAfter < 0:
		return fmt.Errorf("llmtest: Fault.RetryAfter %v is negative", f.RetryAfter)
	case f.RetryAfterFormat < 0 || f.RetryAfterFormat >= retryAfterFormatCount:
		return fmt.Errorf("llmtest: Fault.RetryAfterFormat %d is not a known format", int(f.RetryAfterFormat))
	case f.UpstreamServiceTime < 0:
		return fmt.Errorf("llmtest: Fault.UpstreamServiceTime %v is negative", f.UpstreamServiceTime)
	case f.AttemptCount < 0:
		return fmt.Errorf("llmtest: Fault.AttemptCount %d is negative", f.AttemptCount)
	}
	return nil
}
