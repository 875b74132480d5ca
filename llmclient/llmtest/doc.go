// Package llmtest provides an OpenAI-compatible HTTP server for tests, with fault injection
// and Envoy sidecar emulation, in the manner of net/http/httptest.
//
// A [Server] answers the OpenAI API shapes that common clients decode:
//
//	POST /v1/chat/completions   non-streamed, or SSE-streamed ("data: {...}" chunks, then "data: [DONE]");
//	                            the first chunk carries the role; with stream_options.include_usage a
//	                            last usage-only chunk with empty choices follows (usage is null before)
//	POST /v1/completions        non-streamed or streamed, the same way
//	POST /v1/embeddings         deterministic unit vectors ([Embedding]) for a string, an array of
//	                            strings, or token arrays; encoding_format float or base64
//	GET  /v1/models             the model list ([WithModels]), and GET /v1/models/{id}
//
// Responses echo the request's model; ids derive from the request's arrival number
// ([Request.Seq]): "chatcmpl-1", "cmpl-2", and x-request-id "req_3". Usage is deterministic:
// see [CountTokens] for the formula. [WithChunks], [WithChunkInterval], [WithLatency] and
// [WithEmbeddingDimension] shape the responses; latency may be [Fixed] or drawn from a seeded
// [Distribution].
//
// Requests are validated as the API does: invalid JSON, a missing model, missing or empty
// messages, input or prompt, and wrongly typed fields get 400 with an OpenAI-shaped body such
// as {"error":{"message":"...","type":"invalid_request_error","param":"model","code":null}};
// an unknown path gets 404, a wrong method 405, a body above [WithMaxBodyBytes] 413. Bodies
// sent with Content-Encoding: gzip are decoded. [Server.Requests] records every request,
// faulted or not.
//
// # Faults
//
// A [Fault] changes one response: an HTTP error status with an OpenAI error body
// ([Status]: 429 with Retry-After, 500, 502, 503, 504); an Envoy local reply with Envoy's
// exact body and headers ([EnvoyOverflow], [EnvoyNoHealthyUpstream], [EnvoyConnectFailure],
// [EnvoyUpstreamTimeout]); a connection reset before the headers ([Reset]); a stream cut
// after N chunks ([ResetAfter]); a stall before the headers, before the first content chunk
// or between chunks ([StallBeforeHeaders], [StallBeforeFirstChunk], [StallAfter]); a 200
// carrying an error object ([ErrorEvent]); malformed JSON ([MalformedJSON]); an oversized
// body ([Oversized]). Any response can also carry x-envoy-upstream-service-time and
// x-envoy-attempt-count ([Envoy], [Fault.WithEnvoyHeaders]) and retry hints
// ([Fault.WithRetryAfter]).
//
// Faults are scripted three ways, all safe to change while the server runs:
// [Server.Enqueue] gives the next requests the listed faults in order; a [Phase] holds
// [Rule]s that strike by path, a number of times, or with a probability drawn from a seeded
// source ([WithSeed]), so runs repeat; [Server.SetPhase] switches phases at run time.
//
//	srv := llmtest.NewServer()
//	defer srv.Close()
//	srv.Enqueue(llmtest.Status(503), llmtest.EnvoyOverflow()) // the next two requests fail
//	srv.SetRules(llmtest.Rule{Path: llmtest.PathEmbeddings, Fault: llmtest.Status(429), Probability: 0.1})
//
// Stalls last their Duration, or until the client gives up or the server closes; Close never
// waits for a stall and leaves no goroutine behind.
//
// # Time and testing/synctest
//
// All waiting (latency, chunk intervals, stalls) uses timers, so under testing/synctest it
// runs on the bubble's fake clock and stall durations are exact. A real socket is not
// durably blocking, so inside a bubble create the server with [NewUnstartedServer] and
// connect through [Server.Transport] or [Server.Client], which serve it in memory over
// [net.Pipe]; close the server inside the bubble too. Outside synctest, [NewServer] and
// [NewTestServer] listen on 127.0.0.1, which resets need (a reset closes a real TCP
// connection with SO_LINGER 0).
package llmtest
