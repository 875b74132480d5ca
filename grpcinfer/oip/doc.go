// Package oip serves and calls the Open Inference Protocol (the KServe v2 inference protocol)
// over gRPC with typed Go tensors, with the extensions Triton adds to the same service:
// streaming, statistics and the model repository.
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
//     answering raw when asked raw. A model that implements [StreamModel] answers a request
//     of ModelStreamInfer with many responses as it produces them (a decoupled model in
//     Triton's terms, such as a generator streaming tokens); one that implements [Loader] is
//     loaded and unloaded by RepositoryModelLoad and RepositoryModelUnload, which drive its
//     readiness and, through [ServerConfig].Loading, the health gate. ModelStatistics reports
//     what the server measured on the calls it served;
//   - [Client], which calls any server of the protocol with typed tensors, and
//     [StreamClient], which runs an inference over ModelStreamInfer with a first-response
//     timeout, an idle timeout and retries only until the first response reached the
//     caller; after that a failure is a [StreamError] that says how many responses were
//     delivered.
//
// Error messages repeat values of the request (a model or tensor name, a version, a shape)
// cut to their first 256 bytes, so that a long value cannot push the status past the header
// size gRPC's C-core clients accept.
//
// Resilience of unary calls (breaker, retries, deadlines), compression, keepalive, load
// shedding, usage trailers and health belong to the connection and the gRPC server: see
// package [github.com/infermesh/infermesh/grpcinfer].
package oip
