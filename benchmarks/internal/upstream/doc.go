// Package upstream is the mesh benchmark's upstream server: a separate process serving
// HTTP/1.1 and h2c on one port and gRPC (the Open Inference Protocol's ModelInfer) on
// another, counting the connections it accepts.
//
// [Serve] runs the server and talks to its parent over a line protocol: it writes
// "ready http=ADDR grpc=ADDR" once listening, answers each "stats" line read from its input
// with one JSON [Stats] line, and shuts down when its input ends (so it never outlives the
// benchmark). [Start] is the parent's side.
//
// The HTTP handler accepts compressed request bodies (zstd, gzip) through
// transport.DecompressHandler, reads the whole body, and answers a chat completion on
// /v1/chat/completions and a short JSON acknowledgement elsewhere. The gRPC server uses the
// grpcinfer server presets and serves two models: "chat" (a BYTES input) and "vectors" (an FP32
// matrix), each answering a one-element INT64 output with the number of input elements.
package upstream
