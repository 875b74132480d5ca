package llmtest

import (
	"fmt"
	"net/http"
)

// Defaults of the server's settings; each [Option] documents the one it changes.
const (
	DefaultChunks             = 5
	DefaultChunkText          = "hello "
	DefaultEmbeddingDimension = 16
	DefaultMaxBodyBytes       = 8 << 20
	DefaultRandomSource       = 1
)

// DefaultModels returns the model ids GET /v1/models lists unless [WithModels] says
// otherwise: gpt-4o-mini, gpt-3.5-turbo-instruct and text-embedding-3-small.
func DefaultModels() []string {
	return []string{"gpt-4o-mini", "gpt-3.5-turbo-instruct", "text-embedding-3-small"}
}

// maxEmbeddingDimension bounds the vector size a request or option may ask for.
const maxEmbeddingDimension = 16384

// An Option configures a [Server] at construction. Options that receive an invalid value
// make the constructor panic with a message naming the option and the value, as httptest
// panics on a server it cannot start: both are programming errors in a test.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	source       uint64
	phase        Phase
	latency      Distribution
	interval     Distribution
	chunks       int
	chunkText    string
	dimension    int
	maxBody      int64
	models       []string
	checkModels  bool
	middleware   []func(http.Handler) http.Handler
	maxRecords   int
	streamFormat StreamFormat
	// rejectStreamOptions answers 400 to any request carrying stream_options.
	rejectStreamOptions bool
	rateLimit           RateLimit
	invalidOption       string
}

func defaultConfig() config {
	return config{
		source:    DefaultRandomSource,
		chunks:    DefaultChunks,
		chunkText: DefaultChunkText,
		dimension: DefaultEmbeddingDimension,
		maxBody:   DefaultMaxBodyBytes,
		models:    DefaultModels(),
	}
}

func (c *config) invalid(format string, args ...any) {
	if c.invalidOption == "" {
		c.invalidOption = fmt.Sprintf(format, args...)
	}
}

// WithRandomSource sets n as the start of the random sources of [Rule.Probability]
// draws and latency [Distribution]s (default [DefaultRandomSource]). Two servers with the
// same n, options and request order make the same choices.
func WithRandomSource(n uint64) Option {
	return optionFunc(func(c *config) { c.source = n })
}

// WithPhase sets the phase the server starts in (default: no rules, no faults).
func WithPhase(p Phase) Option {
	return optionFunc(func(c *config) {
		if err := p.Validate(); err != nil {
			c.invalid("WithPhase: %v", err)
		}
		c.phase = p
	})
}

// WithRules starts the server in an unnamed phase holding rules; see [Phase].
func WithRules(rules ...Rule) Option {
	return WithPhase(Phase{Rules: rules})
}

// WithLatency delays every response, before its status and headers, by a duration drawn
// from d (default: no delay). The delay ends early if the client gives up.
func WithLatency(d Distribution) Option {
	return optionFunc(func(c *config) { c.latency = d })
}

// WithChunkInterval waits a duration drawn from d before each content chunk of a stream
// (each event that carries output: a text or argument delta, a tool-call chunk; default: no
// wait), so that the time to the first content chunk is latency + one interval.
func WithChunkInterval(d Distribution) Option {
	return optionFunc(func(c *config) { c.interval = d })
}

// WithChunks sets the completion every chat completion, text completion and Responses answer
// returns: n content chunks or output_text deltas (default [DefaultChunks]), each holding
// text (default [DefaultChunkText]). A non-streamed answer's text is the n texts joined. A
// tool call's arguments are split into at most n pieces (at least one). n may be 0; n must
// not be negative.
func WithChunks(n int, text string) Option {
	return optionFunc(func(c *config) {
		if n < 0 {
			c.invalid("WithChunks: n %d is negative", n)
		}
		c.chunks, c.chunkText = n, text
	})
}

// WithEmbeddingDimension sets the length of embedding vectors (default
// [DefaultEmbeddingDimension], at most 16384). A request's "dimensions" field overrides it.
func WithEmbeddingDimension(n int) Option {
	return optionFunc(func(c *config) {
		if n < 1 || n > maxEmbeddingDimension {
			c.invalid("WithEmbeddingDimension: %d is outside 1 to %d", n, maxEmbeddingDimension)
		}
		c.dimension = n
	})
}

// WithMaxBodyBytes caps the request body (after any gzip decoding) at n bytes (default
// [DefaultMaxBodyBytes]); a larger body gets 413 with an OpenAI-shaped error.
func WithMaxBodyBytes(n int64) Option {
	return optionFunc(func(c *config) {
		if n < 1 {
			c.invalid("WithMaxBodyBytes: %d is not positive", n)
		}
		c.maxBody = n
	})
}

// WithModels sets the model ids GET /v1/models lists (default [DefaultModels]) and makes
// the server check the "model" of every request: an unknown model gets 404 with the
// "model_not_found" error, as the OpenAI API answers. Without this option any model is
// accepted.
func WithModels(ids ...string) Option {
	return optionFunc(func(c *config) {
		c.models = append([]string(nil), ids...)
		c.checkModels = true
	})
}

// WithMiddleware wraps the server's handler in mw (the first given is the outermost), for
// example to decode request encodings other than gzip. [Server.Handler] returns the wrapped
// handler.
func WithMiddleware(mw ...func(http.Handler) http.Handler) Option {
	return optionFunc(func(c *config) {
		for i, m := range mw {
			if m == nil {
				c.invalid("WithMiddleware: middleware %d is nil", i)
			}
		}
		c.middleware = append(c.middleware, mw...)
	})
}

// WithMaxRecords keeps only the n most recent request records (default 0: keep them all),
// so that a long benchmark does not grow without bound. [Request.Seq] still counts every
// request.
func WithMaxRecords(n int) Option {
	return optionFunc(func(c *config) {
		if n < 0 {
			c.invalid("WithMaxRecords: %d is negative", n)
		}
		c.maxRecords = n
	})
}

// A StreamFormat is how the server frames and labels a streamed answer ([WithStreamFormat]).
type StreamFormat int

const (
	// StreamSSE is the OpenAI API's format, the default: Content-Type
	// "text/event-stream; charset=utf-8", each event "data: {json}" and a blank line (a
	// Responses event is preceded by its "event: <type>" line), chat and text completion
	// streams ending with "data: [DONE]".
	StreamSSE StreamFormat = iota
	// StreamSSEUntyped is the same body sent without any Content-Type header, as some servers
	// send it.
	StreamSSEUntyped
	// StreamNDJSON is Content-Type "application/x-ndjson": one JSON object (a chunk, or a
	// Responses event) per line, with no "data:" or "event:" prefix and no [DONE].
	StreamNDJSON

	streamFormatCount
)

// WithStreamFormat makes the server serve streams in format f (default [StreamSSE]), for
// tests of clients that detect a stream from its headers or its first bytes.
func WithStreamFormat(f StreamFormat) Option {
	return optionFunc(func(c *config) {
		if f < 0 || f >= streamFormatCount {
			c.invalid("WithStreamFormat: %d is not a known format", int(f))
		}
		c.streamFormat = f
	})
}

// WithRejectStreamOptions makes the server behave as strict OpenAI-compatible servers that
// reject unknown fields do: any request carrying a stream_options field (even null) gets 400
// {"error":{"message":"Unknown parameter: 'stream_options'.","type":"invalid_request_error",
// "param":"stream_options","code":"unknown_parameter"}}. The same request without the field
// is answered as usual. By default stream_options is accepted with "stream": true.
func WithRejectStreamOptions() Option {
	return optionFunc(func(c *config) { c.rejectStreamOptions = true })
}
