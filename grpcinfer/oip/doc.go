// Package oip serves and calls the Open Inference Protocol (the KServe v2 inference protocol)
// over gRPC with typed Go tensors.
//
// The wire types live in [github.com/infermesh/infermesh/grpcinfer/oip/inferencepb],
// generated from a .proto written from the public specification and wire-compatible with
// KServe, Triton and MLServer. This package adds:
//
//   - [Tensor], a named tensor whose Data is a Go slice ([]float32, []int64, [][]byte, ...),
//     built with [NewTensor] and read with [TensorData] or [Output];
//   - [EncodeRequest], [DecodeRequest], [EncodeResponse] and [DecodeResponse], which convert
//     between tensors and messages in either representation: the typed contents fields, or
//     raw_input_contents / raw_output_contents (little-endian, row-major, no padding; BYTES
//     elements each prefixed by a 4-byte little-endian length). Every size is checked against
//     the shape and datatype, and mistakes come back as a [TensorError] that names the tensor
//     and carries INVALID_ARGUMENT;
//   - [Server], which serves a set of [Model]s (metadata plus Infer on typed tensors) as the
//     inference.GRPCInferenceService, checking inputs against each model's metadata and
//     answering raw when asked raw;
//   - [Client], which calls any server of the protocol with typed tensors.
//
// Resilience (breaker, retries, deadlines), compression, keepalive, load shedding and health
// belong to the connection and the gRPC server: see package
// [github.com/infermesh/infermesh/grpcinfer].
package oip
