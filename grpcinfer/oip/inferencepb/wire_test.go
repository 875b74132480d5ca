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

		// Triton's streaming, statistics and model repository extensions.
		"inference.ModelStreamInferResponse": {"error_message": {1, str, false}, "infer_response": {2, msg, false}},
		"inference.ModelStatisticsRequest":   {"name": {1, str, false}, "version": {2, str, false}},
		"inference.StatisticDuration":        {"count": {1, u64, false}, "ns": {2, u64, false}},
		"inference.InferStatistics": {
			"success": {1, msg, false}, "fail": {2, msg, false}, "queue": {3, msg, false},
			"compute_input": {4, msg, false}, "compute_infer": {5, msg, false}, "compute_output": {6, msg, false},
			"cache_hit": {7, msg, false}, "cache_miss": {8, msg, false}},
		"inference.ModelStatistics": {
			"name": {1, str, false}, "version": {2, str, false}, "last_inference": {3, u64, false},
			"inference_count": {4, u64, false}, "execution_count": {5, u64, false}, "inference_stats": {6, msg, false}},
		"inference.ModelStatisticsResponse": {"model_stats": {1, msg, true}},
		"inference.ModelRepositoryParameter": {
			"bool_param": {1, b, false}, "int64_param": {2, i64, false}, "string_param": {3, str, false}, "bytes_param": {4, byt, false}},
		"inference.RepositoryIndexRequest":  {"repository_name": {1, str, false}, "ready": {2, b, false}},
		"inference.RepositoryIndexResponse": {"models": {1, msg, true}},
		"inference.RepositoryIndexResponse.ModelIndex": {
			"name": {1, str, false}, "version": {2, str, false}, "state": {3, str, false}, "reason": {4, str, false}},
		"inference.RepositoryModelLoadRequest": {
			"repository_name": {1, str, false}, "model_name": {2, str, false}, "parameters": {3, msg, true}},
		"inference.RepositoryModelUnloadRequest": {
			"repository_name": {1, str, false}, "model_name": {2, str, false}, "parameters": {3, msg, true}},
		// Empty in Triton's protocol; KServe's numbers and kinds (model_name = 1, isLoaded /
		// isUnloaded = 2).
		"inference.RepositoryModelLoadResponse":   {"model_name": {1, str, false}, "is_loaded": {2, b, false}},
		"inference.RepositoryModelUnloadResponse": {"model_name": {1, str, false}, "is_unloaded": {2, b, false}},
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
	// The parameters maps are map<string, InferParameter> (map<string, ModelRepositoryParameter>
	// for the repository requests).
	for name, value := range map[string]protoreflect.FullName{
		"inference.ModelInferRequest":            "inference.InferParameter",
		"inference.ModelInferResponse":           "inference.InferParameter",
		"inference.RepositoryModelLoadRequest":   "inference.ModelRepositoryParameter",
		"inference.RepositoryModelUnloadRequest": "inference.ModelRepositoryParameter",
	} {
		d, _ := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		fd := d.(protoreflect.MessageDescriptor).Fields().ByName("parameters")
		if !fd.IsMap() || fd.MapKey().Kind() != str || fd.MapValue().Message().FullName() != value {
			t.Errorf("%s.parameters is not map<string, %s>", name, value)
		}
	}
	// The nested messages are the ones the protocol names.
	for field, want := range map[string]protoreflect.FullName{
		"inference.ModelStreamInferResponse.infer_response": "inference.ModelInferResponse",
		"inference.ModelStatistics.inference_stats":         "inference.InferStatistics",
		"inference.InferStatistics.success":                 "inference.StatisticDuration",
		"inference.InferStatistics.compute_infer":           "inference.StatisticDuration",
		"inference.ModelStatisticsResponse.model_stats":     "inference.ModelStatistics",
		"inference.RepositoryIndexResponse.models":          "inference.RepositoryIndexResponse.ModelIndex",
	} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(field))
		if err != nil {
			t.Errorf("%s: %v", field, err)
			continue
		}
		if got := d.(protoreflect.FieldDescriptor).Message().FullName(); got != want {
			t.Errorf("%s is a %s, spec %s", field, got, want)
		}
	}
	// ModelStatistics keeps Triton's numbers 7 to 9 (batch_stats, memory_usage, response_stats)
	// reserved, so that no edit reuses them with another meaning.
	d, _ := protoregistry.GlobalFiles.FindDescriptorByName("inference.ModelStatistics")
	for n := protoreflect.FieldNumber(7); n <= 9; n++ {
		if !d.(protoreflect.MessageDescriptor).ReservedRanges().Has(n) {
			t.Errorf("inference.ModelStatistics does not reserve field %d", n)
		}
	}
	sd, err := protoregistry.GlobalFiles.FindDescriptorByName("inference.GRPCInferenceService")
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string][2]string{
		"ServerLive":            {"ServerLiveRequest", "ServerLiveResponse"},
		"ServerReady":           {"ServerReadyRequest", "ServerReadyResponse"},
		"ModelReady":            {"ModelReadyRequest", "ModelReadyResponse"},
		"ServerMetadata":        {"ServerMetadataRequest", "ServerMetadataResponse"},
		"ModelMetadata":         {"ModelMetadataRequest", "ModelMetadataResponse"},
		"ModelInfer":            {"ModelInferRequest", "ModelInferResponse"},
		"ModelStreamInfer":      {"ModelInferRequest", "ModelStreamInferResponse"},
		"ModelStatistics":       {"ModelStatisticsRequest", "ModelStatisticsResponse"},
		"RepositoryIndex":       {"RepositoryIndexRequest", "RepositoryIndexResponse"},
		"RepositoryModelLoad":   {"RepositoryModelLoadRequest", "RepositoryModelLoadResponse"},
		"RepositoryModelUnload": {"RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse"},
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
		// ModelStreamInfer alone streams, both ways.
		streams := m == "ModelStreamInfer"
		if string(md.Input().Name()) != io[0] || string(md.Output().Name()) != io[1] || md.IsStreamingClient() != streams || md.IsStreamingServer() != streams {
			t.Errorf("method %s has the wrong signature", m)
		}
	}
}
