package llmclient

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/transport"
)

// APIError is an upstream's error answer: a non-2xx status, an error object inside a 200
// body, or an error event inside a 200 stream before its first output. infermesh hands
// it to the caller as an HTTP answer in the OpenAI error shape (so go-openai returns an
// *openai.APIError and openai-go an *openai.Error); it appears as a Go error only inside
// a [*StreamError], or to code that uses the policy directly. It never holds request
// headers or credentials.
type APIError struct {
	// StatusCode is the HTTP status of the response (200 for an error inside a 200).
	StatusCode int
	// Type and Code are the error object's "type" and "code" fields, when present.
	Type, Code string
	// Message is the upstream's message with the caller's credentials removed (withheld
	// entirely when it refers to the key).
	Message string
	// InBody reports that the error came inside a 200 response or stream: the business
	// error a mesh cannot see.
	InBody bool
	// RetryAfter is the server's wait hint, if any.
	RetryAfter time.Duration
	// Envoy holds the mesh signals of the response.
	Envoy transport.Envoy

	verdict breaker.Verdict
	body    []byte // the OpenAI-shaped error body the caller's SDK decodes
}

// Error describes the failure without credentials.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("llmclient: upstream error: status ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.InBody {
		b.WriteString(" (error object in body)")
	}
	if e.Type != "" {
		b.WriteString(" type=")
		b.WriteString(e.Type)
	}
	if e.Code != "" {
		b.WriteString(" code=")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// BreakerVerdict reports how package breaker judges the error.
func (e *APIError) BreakerVerdict() breaker.Verdict { return e.verdict }

// Class returns the error class, for example "rate_limited" or "context_length_exceeded".
func (e *APIError) Class() breaker.Class { return e.verdict.Class }

// Sentinel causes of a stream's end, reachable with errors.Is through a [StreamError].
var (
	// ErrFirstTokenTimeout: no output came within StreamPolicy.FirstTokenTimeout.
	// Before any output reached the caller it is retried or fails over; the caller
	// sees it only when neither succeeded.
	ErrFirstTokenTimeout = errors.New("llmclient: no output within the first-token timeout")
	// ErrIdleTimeout: the upstream was silent for StreamPolicy.IdleTimeout while the
	// caller waited for the next event.
	ErrIdleTimeout = errors.New("llmclient: stream idle timeout")
	// ErrMaxStreamDuration: the stream ran longer than StreamPolicy.MaxStreamDuration.
	ErrMaxStreamDuration = errors.New("llmclient: stream exceeded its maximum duration")
	// ErrStreamBroken: the connection or the event framing failed mid-stream.
	ErrStreamBroken = errors.New("llmclient: stream broken")
	// ErrStreamTruncated: the stream ended cleanly but without its terminal event
	// ([DONE] or a finish reason for chat; response.completed, .incomplete or .failed
	// for the Responses API).
	ErrStreamTruncated = errors.New("llmclient: stream ended without its terminal event")
	// ErrUpstreamEvent: the upstream sent an error event inside the stream.
	ErrUpstreamEvent = errors.New("llmclient: upstream error event in stream")
	// ErrResponseTooLarge: a response or one stream event exceeded its configured cap.
	ErrResponseTooLarge = errors.New("llmclient: response exceeds the configured size cap")
	// ErrMalformedResponse: a 2xx body that is not the JSON it claims to be.
	ErrMalformedResponse = errors.New("llmclient: malformed upstream response")
)

// StreamError ends a stream after its first output reached the caller; from then on
// nothing is retried, so the caller learns how much it got and why it ended.
type StreamError struct {
	// Chunks is the number of output events delivered to the caller before the end.
	Chunks int
	// Bytes is the number of stream bytes delivered to the caller.
	Bytes int64
	// Err is the cause: ErrIdleTimeout, ErrMaxStreamDuration, ErrStreamBroken (wrapping
	// the transport error), ErrStreamTruncated, ErrMalformedResponse,
	// ErrResponseTooLarge, or an *APIError (with ErrUpstreamEvent) for an error event.
	Err error
}

// Error says how much was delivered and why the stream ended.
func (e *StreamError) Error() string {
	return fmt.Sprintf("llmclient: stream ended after %d chunks (%d bytes) delivered: %v", e.Chunks, e.Bytes, e.Err)
}

// Unwrap returns the cause.
func (e *StreamError) Unwrap() error { return e.Err }

// BreakerVerdict: a stream that failed after output was delivered is not retryable.
func (e *StreamError) BreakerVerdict() breaker.Verdict {
	v := breaker.DefaultClassifier(e.Err)
	v.Retryable = false
	return v
}

// attemptError is an attempt's failure that llmclient classifies itself.
type attemptError struct {
	err     error
	verdict breaker.Verdict
}

func (e *attemptError) Error() string                   { return e.err.Error() }
func (e *attemptError) Unwrap() error                   { return e.err }
func (e *attemptError) BreakerVerdict() breaker.Verdict { return e.verdict }

var (
	retryableTimeout = breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassTimeout}
	finalTimeout     = breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassTimeout}
)

func brokenBeforeOutput(err error) error {
	return &attemptError{err: fmt.Errorf("%w before the first output: %w", ErrStreamBroken, err), verdict: breaker.Verdict{
		Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassConnection}}
}

// malformed is a 2xx body or event that is not the JSON it claims to be. A whole answer
// that arrived malformed is not re-sent (the upstream did the work); a stream's event
// before its first output may be.
func malformed(detail error, retryable bool) error {
	return &attemptError{err: fmt.Errorf("%w: %w", ErrMalformedResponse, detail), verdict: breaker.Verdict{
		Outcome: breaker.OutcomeFailure, Retryable: retryable, Class: breaker.ClassServerError}}
}

func tooLarge(limit int64) error {
	return &attemptError{err: fmt.Errorf("%w (%d bytes)", ErrResponseTooLarge, limit), verdict: breaker.Verdict{
		Outcome: breaker.OutcomeFailure, Retryable: false, Class: breaker.ClassServerError}}
}
