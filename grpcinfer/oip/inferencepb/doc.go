// Package inferencepb holds the generated Go code for the Open Inference Protocol (the KServe v2
// inference protocol) gRPC API: proto package "inference", service
// [GRPCInferenceServiceServer] / [GRPCInferenceServiceClient] with ServerLive, ServerReady,
// ModelReady, ServerMetadata, ModelMetadata and ModelInfer, and the extensions Triton defines
// in the same service: ModelStreamInfer (a bidirectional stream answering each request with any
// number of [ModelStreamInferResponse] messages), ModelStatistics, RepositoryIndex,
// RepositoryModelLoad and RepositoryModelUnload.
//
// inference.proto in this directory was written from the public protocol specification; its
// package, message names and field numbers follow the specification, so the service is
// wire-compatible with KServe, Triton and MLServer clients and servers. [InferParameter] also
// carries double_param (4) and uint64_param (5), added in later revisions of the protocol.
// The messages of the extensions use Triton's field numbers. Where KServe numbers a message
// differently, both are kept when they can be: [RepositoryModelLoadResponse] and
// [RepositoryModelUnloadResponse], empty in Triton's protocol, carry KServe's model_name (1)
// and is_loaded / is_unloaded (2); [RepositoryModelLoadRequest] and
// [RepositoryModelUnloadRequest] follow Triton (repository_name 1, model_name 2), so a KServe
// client's model name (its field 1) arrives as repository_name, which the server in package
// oip reads as the model when model_name is empty. [ModelStatistics] leaves out Triton's
// batch_stats, memory_usage and response_stats (fields 7 to 9, reserved).
//
// Most programs use package [github.com/infermesh/infermesh/grpcinfer/oip] instead, which turns
// these messages into typed tensors and back.
//
// # Registration conflicts
//
// The messages register under the proto full names "inference.*" in the global protobuf
// registry (file path grpcinfer/oip/inferencepb/inference.proto). A binary that also links
// another generated copy of the protocol (for example Triton's grpc_service.proto) registers
// the same names twice, which protobuf-go reports as a conflict at start-up. Use one copy
// per binary.
//
// # Regenerating
//
// The generated files are checked in; builds never run the generator. To regenerate, install
// protoc (3.21 or later) and the two plugins at the pinned versions,
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
//
// then run go generate in this directory, which runs (from the repository root)
//
//	protoc -I . --go_out=. --go_opt=paths=source_relative \
//	    --go-grpc_out=. --go-grpc_opt=paths=source_relative \
//	    grpcinfer/oip/inferencepb/inference.proto
package inferencepb

//go:generate protoc -I ../../.. --go_out=../../.. --go_opt=paths=source_relative --go-grpc_out=../../.. --go-grpc_opt=paths=source_relative grpcinfer/oip/inferencepb/inference.proto
