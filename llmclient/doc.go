// Package llmclient is a resilient HTTP client for OpenAI-compatible APIs.
//
// [NewHTTPClient] returns an *http.Client that go-openai (or openai-go, langchaingo, or
// plain net/http) takes unchanged:
//
//	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
//	cfg := openai.DefaultConfig(key)
//	cfg.HTTPClient = hc
//
// Everything happens in its RoundTripper ([Transport]):
//
//   - Per-route policies, by path, after the seed's VirtualService (see
//     [DefaultRoutes]): chat and legacy completions 300 s overall, 150 s per try, 2
//     attempts; embeddings 30 s, 10 s per try, 3 attempts. Each route keeps its own
//     circuit breaker per upstream host.
//   - Retries only where safe: connection failures, 408, 429 and 5xx, the mesh cases
//     (no retry when Envoy already retried or has no healthy upstream; back off when
//     it is overloaded), always before any byte reached the caller, with Retry-After
//     honoured and the request body replayed exactly. A 200 whose JSON holds an error
//     object is a failure for the breaker: the business error the mesh cannot see.
//   - Streaming-safe deadlines ([StreamPolicy]): a first-token timeout to the first
//     content chunk (not to the headers), an idle timeout between chunks, and no total
//     timeout unless asked for. Before the first content chunk reaches the caller an
//     error status, an error event in the stream or a first-token timeout is retried
//     or fails over; after it nothing is, and the caller's read returns a
//     [*StreamError] that says how much was delivered and why the stream ended.
//   - Usage for tracing: stream_options.include_usage is added to streamed requests
//     that lack it, and the extra usage chunk is kept from a caller who did not ask.
//   - Fallback (package fallback) when the breaker is open, retries ran out on a
//     retryable error, the mesh has no healthy upstream, the first token never came,
//     or too little of the deadline is left; the response carries
//     X-Infermesh-Fallback naming the target.
//   - Tracing (package tracing): one span per logical call, a child span per attempt,
//     GenAI metrics, W3C trace context on every attempt.
//
// Errors: an upstream error status is returned as the response itself (the
// RoundTripper contract; go-openai decodes it into its *openai.APIError). Errors
// infermesh finds itself are typed: [*APIError] for an error object inside a 200
// body or stream, [*StreamError] for a stream that ends after content, breaker's
// errors (errors.Is(err, breaker.ErrOpen), *breaker.Error) when the policy gave up
// without a response. None of them holds the API key.
package llmclient
