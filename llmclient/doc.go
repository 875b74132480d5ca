// Package llmclient is a resilient HTTP client for OpenAI-compatible APIs.
//
// [NewHTTPClient] returns an *http.Client that go-openai, openai-go, langchaingo or
// plain net/http take unchanged:
//
//	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
//
//	cfg := openai.DefaultConfig(key) // go-openai
//	cfg.HTTPClient = hc
//
//	client := openai.NewClient(option.WithHTTPClient(hc)) // openai-go
//
// Everything happens in its RoundTripper ([Transport]):
//
//   - Per-route policies, by path, after Istio's per-route timeouts for an LLM API (see
//     [DefaultRoutes]): chat, the Responses API and legacy completions 300 s overall,
//     150 s per try, 2 attempts; embeddings 30 s, 10 s per try, 3 attempts. Each route
//     keeps its own circuit breaker per upstream host. [Config.Route] changes one field
//     of a default route in one line.
//   - Retries only where safe: connection failures before any response byte, 408, 429
//     and 5xx, the mesh cases (no retry when Envoy already retried or has no healthy
//     upstream; back off when it is overloaded), with Retry-After honoured and the
//     request body replayed exactly. Once a response's headers have arrived, nothing is
//     sent again: the upstream may have done (and billed) the work. A 200 whose JSON
//     holds an error object is a failure for the breaker: the business error the mesh
//     cannot see.
//   - Streams, chat and Responses alike, have one commit point: the first event that
//     carries output (text, refusal, tool-call or function-argument deltas, reasoning).
//     Events before it are held back; until it, a break, an error event, a truncation
//     or the first-token timeout is retried or fails over, and the caller sees only the
//     held-back events of the attempt that wins. After it nothing is re-sent, and the
//     caller's read returns a [*StreamError]. A stream that ends without its terminal
//     event ([DONE] or a finish reason; response.completed, .incomplete or .failed) is
//     truncated: an error, never a success. Deadlines are streaming-safe
//     ([StreamPolicy]): a first-token timeout, an idle timeout that runs only while the
//     caller waits on the upstream, and no total timeout unless asked for.
//   - Usage for tracing: stream_options.include_usage is added to chat and completion
//     streams that lack it (unless the route or a strict host says not to), and the
//     extra usage chunk is kept from a caller who did not ask for it.
//   - Fallback (package fallback) when the breaker is open, retries ran out on a
//     retryable error, the mesh has no healthy upstream, the first token never came, or
//     too little of the deadline is left; within what is left of the route's time. The
//     response carries X-Infermesh-Fallback naming the target.
//   - Tracing (package tracing): one span per logical call, a child span per attempt,
//     GenAI metrics, W3C trace context on every attempt.
//
// # Errors
//
// A failure that came from an upstream's answer (an error status, Envoy's plain-text
// local reply, an error object in a 200, an error event before a stream's first output)
// goes back as an HTTP answer in the OpenAI error shape, so go-openai returns its
// *openai.APIError and openai-go its *openai.Error. The status carries the class (the
// upstream's own, or for an error object in a 200 the status of its class: 429, 500,
// 503, ...), the body the upstream's message with the caller's credentials scrubbed, and
// the headers [HeaderAttempts], [HeaderErrorClass] and x-should-retry: false, which the
// official SDKs honour so that their own retries never multiply infermesh's. What
// infermesh decides on its own is a typed Go error reached with errors.Is and
// errors.As: breaker.ErrOpen (open breaker, no fallback), breaker.ErrDeadlineTooShort
// or context.DeadlineExceeded (no time left), [ErrFirstTokenTimeout], a [*StreamError],
// a *transport.BodyError (a body broken after the upstream answered). The official
// SDKs retry any call that ended without a response; infermesh answers their retry of
// a call it has just failed with the same error at once.
//
// # Per-call overrides
//
// breaker.WithOverrides changes the attempts of one call (and, with a time limit, adds
// the breaker's own time limiter to the route's deadlines):
//
//	ctx := breaker.WithOverrides(ctx, breaker.Overrides{MaxAttempts: 1}) // no retry for this call
//	resp, err := client.CreateChatCompletion(ctx, req)
//
// # Tenants and credentials
//
// One list of credential headers (Config.CredentialHeaders) serves every rule: their
// values are scrubbed from errors and error bodies, they identify the tenant of a
// cached reply (a cache never serves one tenant's answer to another), a fallback never
// receives them, and a redirect to another host drops them.
//
// # The data path of one call
//
// Read top to bottom: [Transport.RoundTrip] → newCall (request: body, route, what the
// body asks for, span, deadline) → call.run (policy: breaker.Do with the route's
// breaker for the upstream host) → call.attempt (attempt: the attempt's deadline or
// first-token timer) → try.run (transport: the base RoundTripper, then the verdict of
// the reply from mesh.HTTPVerdict) → try.errorAnswer, try.wholeAnswer or try.openStream
// (the answer judged; a stream read to its commit point) → call.succeeded or
// call.failed (tracing and cache; fallback, and the error answer or typed error).
package llmclient
