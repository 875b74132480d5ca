// Package grpcinfer makes gRPC inference calls survive a service mesh: dial and server option
// presets, client and server interceptors, a health gate with draining, and (in subpackage
// [github.com/infermesh/infermesh/grpcinfer/oip]) the Open Inference Protocol.
//
// # Presets
//
// [DialOptions] and [ServerOptions] turn a [ClientConfig] and a [ServerConfig] into gRPC
// options; [NewServer] builds a *grpc.Server from ServerOptions and registers gRPC server
// reflection (on unless [ServerConfig].DisableReflection), so that grpcurl and similar tools
// can list and call the services. Both take the same [Keepalive]: a client pings an idle connection every 30 s and
// the server accepts pings every 15 s, and both reject a Keepalive whose client interval is
// below the server's minimum, so a client of the presets is never cut off with GOAWAY
// "too_many_pings" by a server of the presets. Messages may be 64 MiB (gRPC's 4 MiB default
// is too small for tensors). Importing the package registers a zstd compressor (on
// github.com/klauspost/compress, encoders and decoders pooled) and gRPC's gzip; a client opts
// in with [ClientConfig].Compressor and the server answers in kind.
//
// # Client interceptors
//
// [ClientInterceptors] (installed by DialOptions) run each call through a
// [github.com/infermesh/infermesh/breaker.Policy] built from [ClientConfig].Policy: circuit
// breaker and retries with a budget, on by default (the zero ClientConfig means the breaker
// package's defaults; NoPolicy switches both off). Use one ClientConfig per upstream, since
// each builds one breaker. The interceptors are the only retry layer: DialOptions switches
// gRPC's own service-config retries off, so an attempt is never multiplied underneath.
// Time limits come from a [MethodPolicy] per method and are applied as context deadlines,
// which gRPC enforces and sends to the server, so the call stays on the caller's goroutine.
// Failures are classified by gRPC status (see [Error] and its Verdict): a request the
// server refused as larger than its receive limit is the caller's mistake, neither retried
// nor held against the upstream;
// UNAVAILABLE and a shed RESOURCE_EXHAUSTED are retried only before any response message has
// arrived, a server's grpc-retry-pushback-ms is honoured as the wait, and a trailers-only
// UNAVAILABLE carrying Envoy's marks (x-envoy-overloaded, "no healthy upstream",
// x-envoy-attempt-count) becomes the breaker's mesh signals. Streams get a first-message and
// an idle timeout but no total timeout unless asked, as a long generation is not a slow call;
// a server stream is retried until its first message and never after. Every error the
// interceptors return is an *[Error], whose GRPCStatus keeps status.FromError and status.Code
// working. With a [github.com/infermesh/infermesh/tracing.Instrumenter], each call is a span
// with a child span per attempt, on the client and on the server.
//
// # Server interceptors
//
// [ServerInterceptors] (installed by ServerOptions) chain, outermost first: load shedding
// (RESOURCE_EXHAUSTED beyond [ServerConfig].MaxConcurrentCalls, before the handler runs), a
// minimum remaining deadline (DEADLINE_EXCEEDED at once for a call that cannot finish),
// tracing and usage (a handler reports tokens with [ReportUsage]; they are sent as trailers,
// which [UsageFromTrailer] reads, and set on the call's span), and panic recovery (INTERNAL
// to the client, the stack to an optional *slog.Logger).
//
// # Health and draining
//
// [NewHealthGate] registers grpc.health.v1 reporting NOT_SERVING until
// [HealthGate.SetReady], and while a model loads ([HealthGate.Loading], which the Open
// Inference Protocol server calls around RepositoryModelLoad); [HealthGate.Drain] reports
// NOT_SERVING again, lets calls in flight go on for a grace period while services gated on
// [HealthGate.Serving] refuse new ones with UNAVAILABLE, then stops gracefully with a hard
// deadline.
package grpcinfer
