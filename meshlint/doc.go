// Package meshlint checks an application's resilience policy against the service mesh's:
// Istio VirtualServices, DestinationRules and ServiceEntries read from YAML
// ([Mesh.ReadYAML]), or the live configuration of an Envoy sidecar ([ReadEnvoy],
// [CheckEnvoy]). Retries and timeouts of the app and of the mesh are set by different
// people in different files; [Check] says where they disagree, before deploy. The
// command infermesh-lint (cmd/infermesh-lint) wraps it for CI, with text, JSON and
// SARIF output.
//
// It is its own Go module, so that Istio's and Envoy's types never enter the
// dependency graph of the infermesh library.
//
// # The two sides
//
// The application's side is an [llmclient.Description]: the routes of an infermesh
// client (prefix, timeouts, attempts, stream deadlines, hedging), the retries of the SDK
// above it, its peak concurrency and its affinity header. [llmclient.DefaultDescription]
// is infermesh's defaults; a running client exports its own with
// [llmclient.Transport.Describe], and [ReadApp] reads the same schema from YAML or JSON.
//
// The mesh's side is what the sidecar applies, with the defaults of Istio and Envoy
// filled in where the input is silent:
//   - a route with no retries gets Istio's default policy: 2 retries (3 tries) on
//     connect-failure, refused-stream, unavailable, cancelled and retriable status 503;
//     retries with attempts 0 (or no attempts) are off; an empty retryOn keeps those
//     conditions;
//   - a route with no timeout has none (Istio); in a config dump a route action without
//     a timeout has Envoy's 15 s;
//   - an LLM host of a ServiceEntry with an HTTP port that no VirtualService routes gets
//     Istio's default route (every path, no timeout, the default retries);
//   - unset connection-pool limits are unlimited (Istio); in a config dump, absent
//     circuit-breaker thresholds are Envoy's 1024;
//   - outlier detection without maxEjectionPercent ejects up to Envoy's 10 %, and
//     minHealthPercent 0 (Istio's default) sets healthy_panic_threshold 0: panic mode off.
//
// # Which hosts are LLM hosts
//
// The rules look only at LLM and inference traffic. A host is an LLM host when
//   - it is named in [Options.LLMHosts] (infermesh-lint -llm-host; "*.domain" allowed);
//   - it is a public LLM API: api.openai.com, *.openai.azure.com,
//     *.services.ai.azure.com, api.anthropic.com, generativelanguage.googleapis.com,
//     api.mistral.ai, api.groq.com, api.together.xyz, api.deepseek.com,
//     api.fireworks.ai, openrouter.ai, api.cohere.com, api.x.ai;
//   - or a VirtualService (or Envoy virtual host) has a route whose match is written for
//     an LLM path: it takes /v1/chat/completions, /v1/completions, /v1/responses,
//     /v1/embeddings or a prefix of the app's routes, but not "/". That route's hosts and
//     destination hosts are LLM hosts.
//
// Short host names are expanded with the resource's namespace (a resource without one
// is in "default"), as Istio does. Route rules check every HTTP route of an LLM host
// that carries an LLM path. A route carries a path when one of its matches takes it
// with POST (uri exact, prefix or RE2 regex, ignoreUriCase, and the method are
// evaluated; a route with no match takes everything) and no earlier route of the same
// VirtualService takes every request for it; matches on headers, query or source take
// only some requests, so later routes still carry the path. Upstream rules check the
// traffic policies of DestinationRules (top level, port level and subsets, each block on
// its own) and, in live mode, the clusters of LLM hosts.
//
// # Rules
//
// Thresholds compare the mesh with the app route that the carried path takes (the
// longest matching prefix, else the route with the empty prefix). F, I and D are that
// route's stream first-token, idle and max-duration timeouts.
//
//   - stream-timeout, on routes that carry /v1/chat/completions, /v1/completions or
//     /v1/responses. Envoy's route timeout runs until the response ends, so it bounds a
//     whole stream. If the app bounds streams (D > 0): error when timeout < D. If it does
//     not: error when timeout < F + I (a first token at its deadline and one full gap),
//     warning for any longer finite timeout, since a longer answer is cut mid-stream.
//     Envoy's per-try timeout stops once the response starts streaming back, so it bounds
//     the wait for the headers, which a model may send only with its first token: error
//     when perTryTimeout < F.
//   - retry-amplification, on routes with mesh retries: the worst-case upstream requests
//     per logical call, for the worst path the route carries. Naive: mesh tries × app
//     attempts × SDK tries (mesh tries = attempts + 1; a hedging route counts one more
//     app attempt; SDK tries = sdkRetries + 1). Mesh-aware: infermesh answers failures
//     with x-should-retry: false, so the SDK adds none, and it makes no attempt after an
//     answer the mesh already retried (x-envoy-attempt-count > 1), which it can see only
//     when the sidecar reports the count in responses (include_attempt_count_in_response,
//     set by an EnvoyFilter in the input, by [Options.AttemptCountInResponse], or read from
//     the config dump; Istio does not set it). Then the worst case is
//     mesh tries + app attempts - 1; otherwise mesh tries × app attempts. Error when the
//     mesh-aware figure is above 4, warning above 2.
//   - timeout-order: error when the route timeout, or the perTryTimeout (a non-streamed
//     answer arrives whole), is shorter than the app's per-try timeout (its overall
//     timeout when it has none) for a path the route carries: the sidecar answers 504 UT
//     first. Warning when perTryTimeout × tries exceeds the route timeout, so some of the
//     mesh's own retries can never run.
//   - retry-non-idempotent: warning when a route with retries that carries LLM POST paths
//     retries on 5xx, gateway-error, reset, 500, 502 or 504: the model may already have
//     run, and a generation is billed twice.
//   - conn-churn: warning when maxRequestsPerConnection is between 1 and 100 on an LLM host.
//   - pool-overflow, when the app declares its concurrency C: error when http2MaxRequests
//     < C, or tcp.maxConnections + http1MaxPendingRequests < C; warning when
//     http1MaxPendingRequests alone < C (a burst waits as pending while connections
//     open). The sidecar answers 503 UO.
//   - affinity-header: warning when consistentHash.httpHeaderName is not the app's
//     affinity header (or the app sends none); when the app sends one and an in-mesh LLM
//     host (neither a public API nor a MESH_EXTERNAL ServiceEntry) hashes on something
//     else, or has no DestinationRule that hashes on it.
//   - outlier-ejection, when outlier detection is on and panic mode is off
//     (minHealthPercent 0): error when every endpoint can be ejected, that is
//     maxEjectionPercent 100, or a known endpoint count N (static ServiceEntry
//     endpoints, DNS_ROUND_ROBIN's one, or the config dump's) with
//     max(1, N × maxEjectionPercent / 100) ≥ N; warning for an in-mesh host whose count
//     is unknown, since a single replica can always be ejected.
//
// Findings carry the resource ("VirtualService/<namespace>/<name>", "Cluster/<name>",
// "App/<name>"), the field path in it, the file and line, a message and a fix.
package meshlint
