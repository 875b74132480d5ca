package llmtest

import (
	"fmt"
	"net/http"
	"time"
)

// Kind says what a [Fault] does to a response.
type Kind int

// The fault kinds. "Content chunks" are the stream events that carry output (completion
// text, tool-call deltas); the role chunk that opens a chat stream, the finish chunk and the
// usage chunk are not content chunks. Where in a stream a fault strikes (what
// Fault.AfterChunks counts on each route) is described in the package documentation, under
// "Where a stream fault strikes".
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
	// KindStreamReset cuts the response after its headers: a stream dies where Fault.AfterChunks
	// places it (no terminal event, no [DONE]); a JSON body (a response that is not streamed)
	// dies halfway through the bytes its Content-Length announced. The server closes the
	// connection without ending the body, so the client reads an unexpected EOF.
	KindStreamReset
	// KindStallBeforeHeaders waits Fault.Duration before writing anything (0: until the client
	// gives up or the server closes), then answers normally.
	KindStallBeforeHeaders
	// KindStall sends the status and headers, and in a stream the events before the place
	// Fault.AfterChunks names, then waits Fault.Duration (0: until the client gives up or the
	// server closes), then finishes normally. A JSON response stalls after its headers.
	KindStall
	// KindErrorEvent answers 200 and carries an error object (by default
	// {"message":"Overloaded","type":"overloaded_error",...}): a chat or text completion stream
	// sends it as a data event {"error":{...}}, a Responses stream as an "error" event
	// ({"type":"error","code":...,"message":...,"param":...,"sequence_number":n}), where
	// Fault.AfterChunks places it, and ends there (no [DONE]); a JSON response is a body holding
	// only {"error":{...}}.
	KindErrorEvent
	// KindMalformedJSON answers 200 with JSON that does not parse: a JSON response is the first
	// half of the real body; a stream sends the events before the place Fault.AfterChunks names,
	// then the first half of the next event, and ends.
	KindMalformedJSON
	// KindOversized answers 200 with an oversized but valid body: a JSON response is padded with
	// Fault.Size bytes of whitespace inside its top-level object; a stream sends, where
	// Fault.AfterChunks places it, one extra content event holding Fault.Size bytes of padding
	// (text "xxx..." in a text delta, spaces in a tool-call arguments delta, which keeps the
	// arguments valid JSON). Size 0 means [DefaultOversizedBytes]. Usage is not changed by the
	// padding.
	KindOversized
	// KindTruncate ends a stream cleanly (the body ends, no reset) where Fault.AfterChunks
	// places it, without its terminal events: a chat or text completion stream without its
	// finish chunk (no finish_reason), usage chunk and [DONE]; a Responses stream without
	// response.completed, response.incomplete or response.failed. A JSON response is cut as
	// [KindMalformedJSON] cuts it.
	KindTruncate
	// KindResponseFailed ends a Responses stream, where Fault.AfterChunks places it, with a
	// response.failed event: the response with status "failed", an empty output, no usage and
	// an error object (by default {"code":"server_error","message":"The server had an error
	// while processing your request. Sorry about that!"}; Fault.Code and Fault.Message replace
	// it). A Responses JSON answer is that failed response object, with status 200. Chat and
	// text completions have no such event: there it acts as [KindErrorEvent].
	KindResponseFailed
	// KindGzipBomb answers 200 with a body sent with Content-Encoding: gzip (whatever the
	// request's Accept-Encoding), so small on the wire and large once decoded: a JSON response
	// decodes to exactly Fault.Size bytes (its real body padded with whitespace inside the
	// top-level object; a body already larger is sent as is); a stream decodes to its events
	// plus one padding event of Fault.Size bytes, placed as [KindOversized] places it. Size 0
	// means [DefaultOversizedBytes]. The Go client's Transport decodes such a body itself
	// unless the request set its own Accept-Encoding or the transport disables compression.
	KindGzipBomb

	kindCount // the number of kinds; keep last
)

// DefaultOversizedBytes is the padding of a [KindOversized] fault, and the decoded size of a
// [KindGzipBomb] JSON response, whose Size is 0.
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
	KindTruncate:               "truncate",
	KindResponseFailed:         "response-failed",
	KindGzipBomb:               "gzip-bomb",
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
	// AfterChunks places a KindStreamReset, KindStall, KindErrorEvent, KindMalformedJSON,
	// KindOversized, KindTruncate, KindResponseFailed or KindGzipBomb fault in a stream: on a
	// chat or text completion stream it is the number of content chunks sent before the
	// fault strikes; on a Responses stream the number of events sent (every event, from
	// response.created on), unless CountOutput is set. A value past the last place strikes
	// before the stream's terminal events. See "Where a stream fault strikes" in the package
	// documentation for each route's events and its commit point.
	AfterChunks int
	// CountOutput makes AfterChunks count only the events that carry output on a Responses
	// stream (response.output_text.delta, response.function_call_arguments.delta), as it counts
	// content chunks on chat and text completion streams. With it a fault is placed the same
	// way on every route: AfterChunks 0 strikes after every event that carries no output and
	// before the first that does (the last moment before the commit point), 1 just after the
	// first output. [Fault.CountingOutput] sets it.
	CountOutput bool
	// Duration bounds a KindStall or KindStallBeforeHeaders fault: after it the response
	// continues normally. 0 stalls until the client gives up (its request context ends) or
	// the server closes.
	Duration time.Duration
	// HeadersOnly makes a KindStall with AfterChunks 0 stall before the first event of the
	// stream (the role chunk of a chat stream, response.created of a Responses stream), so that
	// only the status and headers have been sent.
	HeadersOnly bool
	// Size is the padding of a KindOversized fault, and the decoded size of a KindGzipBomb
	// fault, in bytes; 0 means [DefaultOversizedBytes].
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

// ResetAfter returns a [KindStreamReset] fault: a stream dies after n content chunks (n
// events of a Responses stream; see [Fault.AfterChunks]); a JSON body dies halfway, after
// its 200 status and headers.
func ResetAfter(n int) Fault { return Fault{Kind: KindStreamReset, AfterChunks: n} }

// StallBeforeHeaders returns a [KindStallBeforeHeaders] fault lasting d (0: until the client
// gives up).
func StallBeforeHeaders(d time.Duration) Fault {
	return Fault{Kind: KindStallBeforeHeaders, Duration: d}
}

// StallBeforeFirstChunk returns a [KindStall] fault that stalls for d (0: until the client gives
// up) before the first content chunk, once every event that carries no output is sent: the
// role chunk of a chat stream; response.created, response.in_progress,
// response.output_item.added (and response.content_part.added) of a Responses stream. It
// counts output ([Fault.CountOutput]), so it strikes at that place on every route.
func StallBeforeFirstChunk(d time.Duration) Fault {
	return Fault{Kind: KindStall, Duration: d, CountOutput: true}
}

// StallAfter returns a [KindStall] fault that stalls for d (0: until the client gives up) after
// n content chunks (n events of a Responses stream; see [Fault.AfterChunks]).
func StallAfter(n int, d time.Duration) Fault {
	return Fault{Kind: KindStall, AfterChunks: n, Duration: d}
}

// ErrorEvent returns a [KindErrorEvent] fault: a 200 response carrying an "Overloaded" error
// object, in a stream after n content chunks (n events of a Responses stream).
func ErrorEvent(n int) Fault { return Fault{Kind: KindErrorEvent, AfterChunks: n} }

// MalformedJSON returns a [KindMalformedJSON] fault: a 200 response whose JSON (in a stream,
// the event after n content chunks, or n events of a Responses stream) does not parse.
func MalformedJSON(n int) Fault { return Fault{Kind: KindMalformedJSON, AfterChunks: n} }

// Truncate returns a [KindTruncate] fault: a stream that ends cleanly after n content chunks
// (n events of a Responses stream) without its terminal events.
func Truncate(n int) Fault { return Fault{Kind: KindTruncate, AfterChunks: n} }

// ResponseFailed returns a [KindResponseFailed] fault: a Responses stream that ends with
// response.failed after n events.
func ResponseFailed(n int) Fault { return Fault{Kind: KindResponseFailed, AfterChunks: n} }

// GzipBomb returns a [KindGzipBomb] fault: a gzip-encoded 200 response that decodes to size
// bytes (0: [DefaultOversizedBytes]).
func GzipBomb(size int) Fault { return Fault{Kind: KindGzipBomb, Size: size} }

// Oversized returns a [KindOversized] fault padding the response with size bytes
// (0: [DefaultOversizedBytes]).
func Oversized(size int) Fault { return Fault{Kind: KindOversized, Size: size} }

// Envoy returns a [KindNone] fault that only adds the headers an Envoy sidecar puts on the
// responses it proxies: x-envoy-upstream-service-time (if upstream > 0) and
// x-envoy-attempt-count (if attempts > 0).
func Envoy(upstream time.Duration, attempts int) Fault {
	return Fault{UpstreamServiceTime: upstream, AttemptCount: attempts}
}

// CountingOutput returns a copy of f whose AfterChunks counts only the events that carry
// output, on every route ([Fault.CountOutput]): ResetAfter(1).CountingOutput() cuts any
// stream just after its first output, ResetAfter(0).CountingOutput() just before it.
func (f Fault) CountingOutput() Fault {
	f.CountOutput = true
	return f
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
