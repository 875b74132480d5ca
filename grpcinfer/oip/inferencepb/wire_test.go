package inferencepb_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// TestWireCompatibility pins every message, field name, number and kind, and every method, to
// the Open Inference Protocol specification, so an edit to inference.proto that would break
// KServe or Triton clients fails here.
func TestWireCompatibility(t *testing.T) {
	type field struct {
		num      protoreflect.FieldNumber
		kind     protoreflect.Kind
		repeated bool
	}
	const (
		str, b, i64, u64, msg, byt = protoreflect.StringKind, protoreflect.BoolKind, protoreflect.Int64Kind, protoreflect.Uint64Kind, protoreflect.MessageKind, protoreflect.BytesKind
	)
	spec := map[string]map[string]field{
		"inference.ServerLiveRequest":     {},
		"inference.ServerLiveResponse":    {"live": {1, b, false}},
		"inference.ServerReadyRequest":    {},
		"inference.ServerReadyResponse":   {"ready": {1, b, false}},
		"inference.ModelReadyRequest":     {"name": {1, str, false}, "version": {2, str, false}},
		"inference.ModelReadyResponse":    {"ready": {1, b, false}},
		"inference.ServerMetadataRequest": {},
		"inference.ServerMetadataResponse": {
			"name": {1, str, false}, "version": {2, str, false}, "extensions": {3, str, true}},
		"inference.ModelMetadataRequest": {"name": {1, str, false}, "version": {2, str, false}},
		"inference.ModelMetadataResponse": {
			"name": {1, str, false}, "versions": {2, str, true}, "platform": {3, str, false},
			"inputs": {4, msg, true}, "outputs": {5, msg, true}},
		"inference.ModelMetadataResponse.TensorMetadata": {
			"name": {1, str, false}, "datatype": {2, str, false}, "shape": {3, i64, true}},
		"inference.ModelInferRequest": {
			"model_name": {1, str, false}, "model_version": {2, str, false}, "id": {3, str, false},
			"parameters": {4, msg, true}, "inputs": {5, msg, true}, "outputs": {6, msg, true},
			"raw_input_contents": {7, byt, true}},
		"inference.ModelInferRequest.InferInputTensor": {
			"name": {1, str, false}, "datatype": {2, str, false}, "shape": {3, i64, true},
			"parameters": {4, msg, true}, "contents": {5, msg, false}},
		"inference.ModelInferRequest.InferRequestedOutputTensor": {
			"name": {1, str, false}, "parameters": {2, msg, true}},
		"inference.ModelInferResponse": {
			"model_name": {1, str, false}, "model_version": {2, str, false}, "id": {3, str, false},
			"parameters": {4, msg, true}, "outputs": {5, msg, true}, "raw_output_contents": {6, byt, true}},
		"inference.ModelInferResponse.InferOutputTensor": {
			"name": {1, str, false}, "datatype": {2, str, false}, "shape": {3, i64, true},
			"parameters": {4, msg, true}, "contents": {5, msg, false}},
		"inference.InferParameter": {
			"bool_param": {1, b, false}, "int64_param": {2, i64, false}, "string_param": {3, str, false},
			"double_param": {4, protoreflect.DoubleKind, false}, "uint64_param": {5, u64, false}},
		"inference.InferTensorContents": {
			"bool_contents": {1, b, true}, "int_contents": {2, protoreflect.Int32Kind, true},
			"int64_contents": {3, i64, true}, "uint_contents": {4, protoreflect.Uint32Kind, true},
			"uint64_contents": {5, u64, true}, "fp32_contents": {6, protoreflect.FloatKind, true},
			"fp64_contents": {7, protoreflect.DoubleKind, true}, "bytes_contents": {8, byt, true}},
	}
	for name, fields := range spec {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		md := d.(protoreflect.MessageDescriptor)
		if md.Fields().Len() != len(fields) {
			t.Errorf("%s has %d fields, spec has %d", name, md.Fields().Len(), len(fields))
		}
		for fname, want := range fields {
			fd := md.Fields().ByName(protoreflect.Name(fname))
			if fd == nil {
				t.Errorf("%s.%s missing", name, fname)
				continue
			}
			isList := fd.Cardinality() == protoreflect.Repeated
			if fd.Number() != want.num || fd.Kind() != want.kind || isList != want.repeated {
				t.Errorf("%s.%s = #%d %v repeated=%v, spec #%d %v repeated=%v", name, fname, fd.Number(), fd.Kind(), isList, want.num, want.kind, want.repeated)
			}
		}
	}
	// The parameters maps are map<string, InferParameter>.
	for _, name := range []string{"inference.ModelInferRequest", "inference.ModelInferResponse"} {
		d, _ := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		fd := d.(protoreflect.MessageDescriptor).Fields().ByName("parameters")
		if !fd.IsMap() || fd.MapValue().Message().FullName() != "inference.InferParameter" {
			t.Errorf("%s.parameters is not map<string, InferParameter>", name)
		}
	}
	sd, err := protoregistry.GlobalFiles.FindDescriptorByName("inference.GRPCInferenceService")
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string][2]string{
		"ServerLive":     {"ServerLiveRequest", "ServerLiveResponse"},
		"ServerReady":    {"ServerReadyRequest", "ServerReadyResponse"},
		"ModelReady":     {"ModelReadyRequest", "ModelReadyResponse"},
		"ServerMetadata": {"ServerMetadataRequest", "ServerMetadataResponse"},
		"ModelMetadata":  {"ModelMetadataRequest", "ModelMetadataResponse"},
		"ModelInfer":     {"ModelInferRequest", "ModelInferResponse"},
	}
	svc := sd.(protoreflect.ServiceDescriptor)
	if svc.Methods().Len() != len(methods) {
		t.Errorf("service has %d methods, want %d", svc.Methods().Len(), len(methods))
	}
	for m, io := range methods {
		md := svc.Methods().ByName(protoreflect.Name(m))
		if md == nil {
			t.Errorf("method %s missing", m)
			continue
		}
		if string(md.Input().Name()) != io[0] || string(md.Output().Name()) != io[1] || md.IsStreamingClient() || md.IsStreamingServer() {
			t.Errorf("method %s has the wrong signature", m)
		}
	}
}
