// Package llmtest provides an OpenAI-compatible HTTP server for tests, with fault injection
// and Envoy sidecar emulation, in the manner of net/http/httptest.
//
// A [Server] answers the OpenAI API shapes that common clients decode:
//
//	POST /v1/chat/completions   non-streamed, or SSE-streamed ("data: {...}" chunks, then "data: [DONE]");
//	                            the first chunk carries the role; with stream_options.include_usage a
//	                            last usage-only chunk with empty choices follows (usage is null before);
//	                            with function tools and a tool_choice that forces a call, a tool call
//	POST /v1/responses          the Responses API: a response object, or a stream of typed events
//	                            ("event: response.output_text.delta" + "data: {...}"), from
//	                            response.created to response.completed; a function_call item when
//	                            tool_choice forces a call
//	POST /v1/completions        non-streamed or streamed, as chat completions are
//	POST /v1/embeddings         deterministic unit vectors ([Embedding]) for a string, an array of
//	                            strings, or token arrays; encoding_format float or base64
//	GET  /v1/models             the model list ([WithModels]), and GET /v1/models/{id}
//
// Responses echo the request's model; ids derive from the request's arrival number
// ([Request.Seq]): "chatcmpl-1", "cmpl-2", "resp_3" (its message "msg_3", or its function
// call "fc_3" with call_id "call_3"), and x-request-id "req_3". Usage is deterministic: see
// [CountTokens] for the formula. [WithChunks], [WithChunkInterval], [WithLatency] and
// [WithEmbeddingDimension] shape the responses; latency may be [Fixed] or drawn from a
// [Distribution] of the server's random source.
//
// A chat or Responses request with function tools whose tool_choice is "required" or names a
// function is answered with a call of that function (the first function tool for
// "required"): a chat message with tool_calls and finish_reason "tool_calls" (streamed as
// delta.tool_calls: index, id, type and function.name in the first chunk, then
// function.arguments in pieces), or a Responses function_call item (streamed as
// response.function_call_arguments.delta events). The arguments are a JSON object built from
// the function's parameters schema: each top-level property, in name order, holds its
// "const", its first "enum" value, or by its type "llmtest", 1, true, [] or {}. They are
// split between JSON tokens into as many pieces as [WithChunks] gives chunks (at most one
// per token), and count one completion token per piece. Any other tool_choice is answered
// with text.
//
// Requests are validated as the API does: invalid JSON, a missing model, missing or empty
// messages, input or prompt, wrongly typed fields, malformed tools and a tool_choice naming
// no tool get 400 with an OpenAI-shaped body such as
// {"error":{"message":"...","type":"invalid_request_error","param":"model","code":null}};
// an unknown path gets 404, a wrong method 405, a body above [WithMaxBodyBytes] 413. Bodies
// sent with Content-Encoding: gzip are decoded. [Server.Requests] records every request,
// faulted or not, with its headers. [WithRejectStreamOptions] makes the server as strict
// about stream_options as some OpenAI-compatible servers are; [WithStreamFormat] serves
// streams without a Content-Type, or as application/x-ndjson.
//
// # Faults
//
// A [Fault] changes one response: an HTTP error status with an OpenAI error body
// ([Status]: 429 with Retry-After, 500, 502, 503, 504); an Envoy local reply with Envoy's
// exact body and headers ([EnvoyOverflow], [EnvoyNoHealthyUpstream], [EnvoyConnectFailure],
// [EnvoyUpstreamTimeout]); a connection reset before the headers ([Reset]); a response cut
// after its headers, a stream after N events, a JSON body halfway ([ResetAfter]); a stream
// that ends cleanly without its terminal events ([Truncate]); a stall before the headers,
// before the first content chunk or between chunks ([StallBeforeHeaders],
// [StallBeforeFirstChunk], [StallAfter]); a 200 carrying an error object ([ErrorEvent]); a
// Responses stream that ends in response.failed ([ResponseFailed]); malformed JSON
// ([MalformedJSON]); an oversized body ([Oversized]); a gzip-encoded body that decodes to a
// given size ([GzipBomb]). Any response can also carry x-envoy-upstream-service-time and
// x-envoy-attempt-count ([Envoy], [Fault.WithEnvoyHeaders]) and retry hints
// ([Fault.WithRetryAfter]). Every fault applies to every route; those that shape a
// successful answer do not apply to a request that fails validation.
//
// Faults are scripted three ways, all safe to change while the server runs:
// [Server.Enqueue] gives the next requests the listed faults in order; a [Phase] holds
// [Rule]s that strike by path, a number of times, or with a probability drawn from a fixed
// source ([WithRandomSource]), so runs repeat; [Server.SetPhase] switches phases at run time.
//
//	srv := llmtest.NewServer()
//	defer srv.Close()
//	srv.Enqueue(llmtest.Status(503), llmtest.EnvoyOverflow()) // the next two requests fail
//	srv.SetRules(llmtest.Rule{Path: llmtest.PathEmbeddings, Fault: llmtest.Status(429), Probability: 0.1})
//
// Stalls last their Duration, or until the client gives up or the server closes; Close never
// waits for a stall and leaves no goroutine behind.
//
// # Where a stream fault strikes
//
// [Fault.AfterChunks] (the n of [ResetAfter], [StallAfter], [ErrorEvent], [MalformedJSON],
// [Truncate], [ResponseFailed]; also used by [KindOversized] and [KindGzipBomb]) places a
// fault in a stream. A stream's events either carry
// output (text, tool-call or argument deltas) or not; the first that does is the commit
// point, after which a client must not retry, hedge or fail over. What n counts differs by
// route:
//
//	chat, completions   role chunk (chat only) | content chunk × c | finish chunk, [usage chunk], [DONE]
//	                    n = content chunks sent: 0 strikes after the role chunk, before any
//	                    output; 1 just after the first content chunk
//	chat, tool call     header chunk (role, id, name: output) | argument chunk × k | finish chunk, ...
//	                    n = chunks sent: 0 strikes before the first chunk; 1 after the header
//	Responses, text     0 response.created, 1 response.in_progress, 2 response.output_item.added,
//	                    3 response.content_part.added | 4 … output_text.delta × c | output_text.done,
//	                    content_part.done, output_item.done | response.completed or .incomplete
//	                    n = events sent: 0 to 4 strike before any output, 5 just after the first delta
//	Responses, call     0 created, 1 in_progress, 2 output_item.added | 3 … function_call_arguments.delta × k |
//	                    function_call_arguments.done, output_item.done | response.completed
//	                    n = events sent: 0 to 3 strike before any output, 4 just after the first delta
//
// An n past the last place strikes before the terminal events (finish chunk; response.completed),
// so a faulted stream never completes. [KindOversized] and [KindGzipBomb] padding is output,
// so on a Responses stream it is placed among the deltas. [Fault.CountingOutput] makes n count
// output events on Responses streams too, so that one fault strikes at the same place on every
// route: ResetAfter(0).CountingOutput() cuts any stream just before its first output (every
// event that carries none was sent), ResetAfter(1).CountingOutput() just after it.
// [StallBeforeFirstChunk] counts output this way. HeadersOnly stalls before the first event.
//
// # Rate limits
//
// [WithRateLimit] makes the server enforce requests-per-minute and tokens-per-minute limits
// as the OpenAI API does: continuously refilled buckets, a 429 of type "requests" or
// "tokens" with Retry-After when a bucket cannot pay, and x-ratelimit-* headers on every
// answer of a limited route (which [RateLimit.NoHeaders] turns off). [Server.RateLimitCounts]
// counts the requests admitted and refused.
//
// # Time and testing/synctest
//
// All waiting (latency, chunk intervals, stalls) uses timers, and rate-limit buckets read
// the clock, so under testing/synctest they run on the bubble's fake clock and durations are
// exact. A real socket is not durably blocking, so inside a bubble create the server with
// [NewUnstartedServer] and connect through [Server.Transport] or [Server.Client], which serve
// it in memory over [net.Pipe]; close the server inside the bubble too. Outside synctest,
// [NewServer] and [NewTestServer] listen on 127.0.0.1, which resets need (a reset closes a
// real TCP connection with SO_LINGER 0).
package llmtest
