// Package inferencepb holds the generated Go code for the Open Inference Protocol (the KServe v2
// inference protocol) gRPC API: proto package "inference", service
// [GRPCInferenceServiceServer] / [GRPCInferenceServiceClient] with ServerLive, ServerReady,
// ModelReady, ServerMetadata, ModelMetadata and ModelInfer.
//
// inference.proto in this directory was written from the public protocol specification; its
// package, message names and field numbers follow the specification, so the service is
// wire-compatible with KServe, Triton and MLServer clients and servers. [InferParameter] also
// carries double_param (4) and uint64_param (5), added in later revisions of the protocol.
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
