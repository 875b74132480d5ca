// Package transport provides HTTP transports tuned for calls through a service mesh: pooled
// HTTP/1.1, HTTP/2 and h2c with keepalive, zstd/gzip compression, Envoy signal parsing, HTTP
// outcome classification for package breaker, and sidecar detection. It knows nothing of LLMs.
//
// # Pools
//
// [New] returns a fresh [net/http.Transport] from a [Config]. The zero Config is
// [PresetDirect]: 64 idle connections per host (the standard library keeps 2, which churns
// connections under concurrent load), a 50 s idle timeout below common proxy idle timeouts,
// TCP keepalive through [net.KeepAliveConfig], HTTP/2 with PING health checks and TLS 1.2 at
// minimum. [PresetSidecar] is plain pooled HTTP/1.1 to a local sidecar, which does mTLS and
// HTTP/2 upstream itself. [Config.H2C] opts in to HTTP/2 without TLS.
//
// # Compression
//
// [NewCompressor] wraps a transport to compress request bodies (zstd or gzip, above
// [CompressionConfig.MinSize]) and to decode zstd and gzip responses with a hard cap on the
// decoded size ([DecompressionLimitError]). [DecompressHandler] is the server side: it decodes
// compressed request bodies under the same kind of cap.
//
// # Mesh signals and classification
//
// [ParseEnvoy] reads Envoy's local replies ("no healthy upstream", "upstream request
// timeout", "upstream connect error or disconnect/reset before headers. reset reason: ...")
// and x-envoy-* headers into an [Envoy]. [ParseRetryAfter] reads Retry-After and
// retry-after-ms. [ClassifyResponse] turns a response into a breaker.Verdict, [StatusError]
// carries a failed response as an error, and [Classify] is a breaker.Classifier for HTTP
// errors. [BodyError] marks errors that happened after the response began, which are never
// retried at this layer.
//
// # Sidecar awareness
//
// [DetectMesh] tells an Istio sidecar, ambient mode, proxyless gRPC and no mesh apart, from
// the downward-API annotations, the sidecar's readiness endpoint and GRPC_XDS_BOOTSTRAP; the
// [Mesh.Preset] it returns picks the transport preset. [WaitForSidecar] waits for the sidecar
// to become ready and [QuitSidecar] asks it to exit when a job is done.
package transport
