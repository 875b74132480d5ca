// Package harness runs the mesh benchmark: it starts the upstream process and the proxy
// chains, runs every case of the matrix with package load, measures CPU and connections
// around each run, and collects a report.Report.
//
// # The matrix
//
// The full cartesian product (5 paths x 3 protocols x 3 clients x 3 concurrencies x 3
// payloads x 3 codings) would take hours, so [Plan] runs two sections:
//
//   - hops: every path (direct; each installed proxy at 1 hop and 2 hops) x every protocol
//     the proxy carries (HTTP/1.1, h2c, gRPC) x every client of that protocol (stdlib,
//     infermesh transport, infermesh llmclient; grpc-go default, grpcinfer) x every
//     concurrency, with the 1 KiB chat payload and no compression;
//   - payloads: every payload x coding, for HTTP/1.1 and gRPC, direct and through one hop
//     of the first installed proxy, at Config.PayloadConcurrency, with infermesh's client
//     of each protocol (every coding) and the plain one (none, and gzip by hand).
//
// Each case's requests and time are split into Config.Rounds rounds, run interleaved with the
// other cases of the same path, so that drift in a shared machine hits every client alike.
// [QuickConfig] shrinks both sections for a smoke test that finishes well under a minute.
package harness
