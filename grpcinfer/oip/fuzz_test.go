package oip_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// FuzzDecodeRequest feeds arbitrary wire bytes through the request decoder. Whatever decodes
// must re-encode (typed and raw) and decode again to the same tensors; nothing may panic or
// allocate beyond what the input justifies.
func FuzzDecodeRequest(f *testing.F) {
	for _, raw := range []bool{false, true} {
		m, err := oip.EncodeRequest(&oip.InferRequest{ModelName: "m", Raw: raw, Inputs: allTensors()})
		if err != nil {
			f.Fatal(err)
		}
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	small, _ := proto.Marshal(&inferencepb.ModelInferRequest{
		Inputs:           []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "s", Datatype: "BYTES", Shape: []int64{2}}},
		RawInputContents: [][]byte{{1, 0, 0, 0, 'a', 0, 0, 0, 0}},
	})
	f.Add(small)
	huge, _ := proto.Marshal(&inferencepb.ModelInferRequest{
		Inputs:           []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "h", Datatype: "BYTES", Shape: []int64{1 << 40}}},
		RawInputContents: [][]byte{{0, 0, 0, 0}},
	})
	f.Add(huge)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m inferencepb.ModelInferRequest
		if err := proto.Unmarshal(b, &m); err != nil {
			return
		}
		req, err := oip.DecodeRequest(&m)
		if err != nil {
			return
		}
		for _, raw := range []bool{false, true} {
			req.Raw = raw
			m2, err := oip.EncodeRequest(req)
			if err != nil {
				t.Fatalf("decoded request does not re-encode (raw=%v): %v", raw, err)
			}
			again, err := oip.DecodeRequest(m2)
			if err != nil {
				t.Fatalf("re-encoded request does not decode (raw=%v): %v", raw, err)
			}
			for i := range req.Inputs {
				if !sameData(req.Inputs[i].Data, again.Inputs[i].Data) {
					t.Fatalf("input %d changed across a round trip (raw=%v): %#v -> %#v", i, raw, req.Inputs[i].Data, again.Inputs[i].Data)
				}
			}
		}
	})
}

// FuzzDecodeRawTensor decodes raw contents of one tensor for any datatype and shape.
func FuzzDecodeRawTensor(f *testing.F) {
	f.Add("FP32", int64(2), int64(1), []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0})
	f.Add("BYTES", int64(2), int64(1), []byte{1, 0, 0, 0, 'a', 0, 0, 0, 0})
	f.Add("BOOL", int64(3), int64(1), []byte{0, 1, 2})
	f.Add("FP16", int64(1), int64(1), []byte{0, 0x3c})
	f.Add("BYTES", int64(1<<40), int64(1<<20), []byte{})
	f.Fuzz(func(t *testing.T, dt string, d0, d1 int64, raw []byte) {
		m := &inferencepb.ModelInferRequest{
			Inputs:           []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "t", Datatype: dt, Shape: []int64{d0, d1}}},
			RawInputContents: [][]byte{raw},
		}
		req, err := oip.DecodeRequest(m)
		if err != nil {
			return
		}
		in := req.Inputs[0]
		if err := in.Validate(); err != nil {
			t.Fatalf("decoded tensor is invalid: %v", err)
		}
		m2, err := oip.EncodeRequest(&oip.InferRequest{Raw: true, Inputs: []oip.Tensor{in}})
		if err != nil {
			t.Fatal(err)
		}
		if dt != "BOOL" && string(m2.RawInputContents[0]) != string(raw) {
			t.Fatalf("raw bytes changed across a round trip: % x -> % x", raw, m2.RawInputContents[0])
		}
	})
}
