// Package tracing records OpenTelemetry spans and metrics for GenAI calls,
// following the GenAI semantic conventions pinned to semconv v1.41.0, plus the
// resilience facts infermesh adds: attempts, retries, circuit breaker state,
// fallback target and service mesh signals.
//
// It uses only the OpenTelemetry API. Install an SDK (or not) in the program;
// with no-op or unset global providers [Instrumenter.Start] returns a nil
// [*Call] and instrumentation costs nothing: every Call and [Attempt] method is
// nil-safe.
//
// # Calls
//
// [New] builds an [Instrumenter] from a [Config] whose zero value gives the
// defaults. [Instrumenter.Start] begins one span per logical call, named
// "{gen_ai.operation.name} {gen_ai.request.model}", of kind CLIENT (INTERNAL
// for an in-process call, SERVER for the server side of an RPC). The [Call] it
// returns collects what happens and [Call.End] sets the final attributes
// (gen_ai.response.model, gen_ai.response.id, gen_ai.response.finish_reasons,
// gen_ai.usage.input_tokens and output_tokens,
// gen_ai.response.time_to_first_chunk, error.type, [AttemptsKey] and the
// others in this package) and records the metrics:
// gen_ai.client.operation.duration, gen_ai.client.token.usage (by
// gen_ai.token.type) and, for streams, gen_ai.client.operation.time_to_first_chunk,
// with the conventions' bucket boundaries. Server-side calls record
// gen_ai.server.request.duration and gen_ai.server.time_to_first_token.
//
// Each try is a child span ([Call.StartAttempt]); a fallback target gets its
// own child span ([Call.StartFallback]). Inject the attempt's context into the
// outgoing request ([Instrumenter.InjectHeader]) so that the trace stays whole
// across retries and fallbacks. Retries, retry budget rejections, breaker
// state and fallbacks are events and attributes on the call span, and the
// counters infermesh.retries, infermesh.fallbacks, infermesh.budget.rejections
// and infermesh.breaker.transitions ([Instrumenter.BreakerTransition]).
// [Call.Mesh] records Envoy's upstream service time next to the client's own
// time, so the cost of the mesh hop is visible per call.
//
// # What the response said
//
// The caller reads the response (package llmclient parses each body and stream
// event once) and hands the facts over: [Call.Response] (model, id, finish
// reasons), [Call.Usage] (never estimated: only what the provider reported),
// [Call.FirstChunk] and [Call.Chunk] for the chunks of a stream that carry
// output, and [Call.Output] for the completion text, recorded only with
// [Config.CaptureContent].
//
// # Secrets and content
//
// Error texts are never recorded (only error.type and the span status), no
// header is read, and URLs only give host and port ([ServerFromURL]), so API
// keys and Authorization headers cannot reach spans, events or metrics
// through this package. Prompts and completions are recorded only with
// [Config.CaptureContent], truncated to [Config.MaxContentBytes].
package tracing
