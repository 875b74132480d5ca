// Package infermesh keeps LLM and AI-inference calls alive inside a service mesh.
//
// It complements Istio/Envoy (outlier detection, mesh retries, route timeouts) rather than
// replacing them: it sees what the mesh cannot (business errors inside 200 responses,
// slow calls, Envoy's own local replies) and it never multiplies the mesh's retries.
//
// The packages, lowest first:
//
//   - breaker: one layered policy around a call: time limiter, retry with a retry
//     budget, circuit breaker (Resilience4j semantics on gobreaker), per-try time limit.
//     It knows nothing of HTTP, gRPC or LLMs.
//   - transport: pooled HTTP/1.1, HTTP/2 and h2c transports, zstd/gzip compression with
//     decompression caps, Envoy signal parsing, HTTP outcome classification for breaker,
//     and sidecar detection.
//   - tracing: OpenTelemetry GenAI spans and metrics: token usage, time to first chunk,
//     retries, breaker state, fallback target and mesh signals.
//   - fallback: ordered fallback targets: another OpenAI-compatible endpoint (a local
//     Ollama, llama.cpp or vLLM server), an in-process function, a last-good cache, a
//     static reply.
//   - llmclient: an *http.Client for go-openai (or any OpenAI-compatible caller) with
//     per-route policies, streaming-safe deadlines, fallback and tracing; and
//     llmclient/llmtest, a fault-injecting OpenAI-compatible test server.
//   - grpcinfer: gRPC client and server interceptors, keepalive and compression presets,
//     a health gate with drain, and the Open Inference Protocol (KServe v2).
//
// The usual entry point is one line in a go-openai program:
//
//	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
//	cfg := openai.DefaultConfig(apiKey)
//	cfg.HTTPClient = hc
//	client := openai.NewClientWithConfig(cfg)
package infermesh
