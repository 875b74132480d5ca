package oip_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// allTensors has one tensor of every datatype, with awkward values (extremes, NaN bits).
func allTensors() []oip.Tensor {
	fp16 := oip.NewTensor("half", []int64{2}, []uint16{0x3c00, 0xfbff})
	fp16.Datatype = oip.FP16
	bf16 := oip.NewTensor("bhalf", []int64{1, 1}, []uint16{0x3f80})
	bf16.Datatype = oip.BF16
	return []oip.Tensor{
		oip.NewTensor("b", []int64{3}, []bool{true, false, true}),
		oip.NewTensor("i8", []int64{2}, []int8{math.MinInt8, math.MaxInt8}),
		oip.NewTensor("i16", []int64{2}, []int16{math.MinInt16, math.MaxInt16}),
		oip.NewTensor("i32", []int64{2, 1}, []int32{math.MinInt32, 7}),
		oip.NewTensor("i64", []int64{2}, []int64{math.MinInt64, math.MaxInt64}),
		oip.NewTensor("u8", []int64{3}, []uint8{0, 1, 255}),
		oip.NewTensor("u16", []int64{1}, []uint16{math.MaxUint16}),
		oip.NewTensor("u32", []int64{1}, []uint32{math.MaxUint32}),
		oip.NewTensor("u64", []int64{1}, []uint64{math.MaxUint64}),
		oip.NewTensor("f32", []int64{2, 2}, []float32{1.5, -0, float32(math.Inf(1)), math.SmallestNonzeroFloat32}),
		oip.NewTensor("f64", []int64{2}, []float64{math.Pi, -math.MaxFloat64}),
		oip.NewTensor("s", []int64{3}, [][]byte{[]byte("hello"), {}, []byte("wörld")}),
		oip.NewTensor("empty", []int64{0, 4}, []float32{}),
		oip.NewTensor("scalar", nil, []int64{42}),
		fp16, bf16,
	}
}

func TestRoundTripEveryDatatype(t *testing.T) {
	t.Parallel()
	for _, raw := range []bool{false, true} {
		in := &oip.InferRequest{ModelName: "m", ID: "req-1", Inputs: allTensors(), Raw: raw,
			Outputs: []oip.RequestedOutput{{Name: "out"}}}
		m, err := oip.EncodeRequest(in)
		if err != nil {
			t.Fatalf("raw=%v: EncodeRequest: %v", raw, err)
		}
		// FP16/BF16 force raw even when raw was not asked for.
		if len(m.RawInputContents) != len(in.Inputs) {
			t.Fatalf("raw=%v: %d raw entries, want %d", raw, len(m.RawInputContents), len(in.Inputs))
		}
		// Through the wire format, as a server would see it.
		wire, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back inferencepb.ModelInferRequest
		if err := proto.Unmarshal(wire, &back); err != nil {
			t.Fatal(err)
		}
		got, err := oip.DecodeRequest(&back)
		if err != nil {
			t.Fatalf("raw=%v: DecodeRequest: %v", raw, err)
		}
		if got.ModelName != "m" || got.ID != "req-1" || len(got.Outputs) != 1 || got.Outputs[0].Name != "out" || !got.Raw {
			t.Fatalf("raw=%v: header fields lost: %+v", raw, got)
		}
		for i, want := range in.Inputs {
			g := got.Inputs[i]
			if g.Name != want.Name || g.Datatype != want.Datatype || !reflect.DeepEqual(normShape(g.Shape), normShape(want.Shape)) {
				t.Errorf("raw=%v: input %d header = %s %s %v, want %s %s %v", raw, i, g.Name, g.Datatype, g.Shape, want.Name, want.Datatype, want.Shape)
			}
			if !sameData(g.Data, want.Data) {
				t.Errorf("raw=%v: input %q data = %#v, want %#v", raw, want.Name, g.Data, want.Data)
			}
		}
	}
}

func TestTypedRoundTrip(t *testing.T) {
	t.Parallel()
	var typed []oip.Tensor
	for _, tt := range allTensors() {
		if !tt.Datatype.RawOnly() {
			typed = append(typed, tt)
		}
	}
	resp := &oip.InferResponse{ModelName: "m", Outputs: typed}
	m, err := oip.EncodeResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.RawOutputContents) != 0 {
		t.Fatalf("typed response has raw contents")
	}
	if got := m.Outputs[1].GetContents().GetIntContents(); !reflect.DeepEqual(got, []int32{math.MinInt8, math.MaxInt8}) {
		t.Fatalf("INT8 typed contents = %v", got)
	}
	back, err := oip.DecodeResponse(m)
	if err != nil {
		t.Fatal(err)
	}
	if back.Raw {
		t.Fatal("decoded typed response reports Raw")
	}
	for i, want := range typed {
		if !sameData(back.Outputs[i].Data, want.Data) {
			t.Errorf("output %q = %#v, want %#v", want.Name, back.Outputs[i].Data, want.Data)
		}
	}
	f32, err := oip.Output[float32](back, "f32")
	if err != nil || len(f32) != 4 || f32[0] != 1.5 {
		t.Fatalf("Output[float32] = %v, %v", f32, err)
	}
	if _, err := oip.Output[int64](back, "f32"); err == nil || !strings.Contains(err.Error(), `"f32"`) {
		t.Fatalf("Output with the wrong element type: err = %v", err)
	}
}

func TestRawLayoutIsLittleEndian(t *testing.T) {
	t.Parallel()
	m, err := oip.EncodeRequest(&oip.InferRequest{Raw: true, Inputs: []oip.Tensor{
		oip.NewTensor("x", []int64{2}, []float32{1, -2}),
		oip.NewTensor("s", []int64{2}, [][]byte{[]byte("ab"), []byte("c")}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantF := []byte{0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0}
	if !reflect.DeepEqual(m.RawInputContents[0], wantF) {
		t.Fatalf("FP32 raw = % x, want % x", m.RawInputContents[0], wantF)
	}
	wantS := []byte{2, 0, 0, 0, 'a', 'b', 1, 0, 0, 0, 'c'}
	if !reflect.DeepEqual(m.RawInputContents[1], wantS) {
		t.Fatalf("BYTES raw = % x, want % x", m.RawInputContents[1], wantS)
	}
	if m.Inputs[0].Contents != nil {
		t.Fatal("raw request also sets typed contents")
	}
}

func TestDecodeErrorsNameTheTensor(t *testing.T) {
	t.Parallel()
	input := func(name, dt string, shape []int64, c *inferencepb.InferTensorContents) *inferencepb.ModelInferRequest_InferInputTensor {
		return &inferencepb.ModelInferRequest_InferInputTensor{Name: name, Datatype: dt, Shape: shape, Contents: c}
	}
	cases := []struct {
		name string
		req  *inferencepb.ModelInferRequest
		want string
	}{
		{"count mismatch", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("x", "FP32", []int64{2, 3}, &inferencepb.InferTensorContents{Fp32Contents: make([]float32, 5)})}},
			`input "x": shape [2 3] needs 6 elements but fp32_contents has 5`},
		{"wrong field", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("x", "FP32", []int64{1}, &inferencepb.InferTensorContents{IntContents: []int32{1}})}},
			`input "x": datatype FP32 takes fp32_contents but int_contents is set`},
		{"unknown datatype", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("y", "FP8", []int64{1}, nil)}},
			`input "y": unknown datatype "FP8"`},
		{"negative dim", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("z", "INT64", []int64{-1}, nil)}},
			`input "z": shape [-1] has negative dimension -1 at index 0`},
		{"overflowing shape", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("big", "INT64", []int64{1 << 40, 1 << 40}, nil)}},
			`input "big": shape [1099511627776 1099511627776] has too many elements`},
		{"int8 out of range", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("q", "INT8", []int64{2}, &inferencepb.InferTensorContents{IntContents: []int32{1, 300}})}},
			`input "q": element 1 (300) is out of range for INT8`},
		{"fp16 typed", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("h", "FP16", []int64{1}, &inferencepb.InferTensorContents{UintContents: []uint32{1}})}},
			`input "h": datatype FP16 can only be sent as raw contents`},
		{"raw size", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("r", "FP64", []int64{2}, nil)}, RawInputContents: [][]byte{make([]byte, 15)}},
			`input "r": shape [2] of FP64 needs 16 raw bytes but has 15`},
		{"raw plus typed", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("r", "UINT8", []int64{1}, &inferencepb.InferTensorContents{UintContents: []uint32{1}})}, RawInputContents: [][]byte{{1}}},
			`input "r": sets uint_contents although the message uses raw contents`},
		{"raw count", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("a", "UINT8", []int64{1}, nil), input("b", "UINT8", []int64{1}, nil)}, RawInputContents: [][]byte{{1}}},
			`request has 2 inputs but 1 raw_input_contents entries`},
		{"raw bytes truncated", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("s", "BYTES", []int64{1}, nil)}, RawInputContents: [][]byte{{9, 0, 0, 0, 'a'}}},
			`input "s": raw BYTES element 0 claims 9 bytes but only 1 remain`},
		{"raw bytes left over", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("s", "BYTES", []int64{1}, nil)}, RawInputContents: [][]byte{{1, 0, 0, 0, 'a', 'b'}}},
			`input "s": raw BYTES contents have 1 bytes left over after 1 elements`},
		{"duplicate", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("d", "BOOL", []int64{1}, &inferencepb.InferTensorContents{BoolContents: []bool{true}}),
			input("d", "BOOL", []int64{1}, &inferencepb.InferTensorContents{BoolContents: []bool{true}})}},
			`input "d": appears more than once`},
		{"no name", &inferencepb.ModelInferRequest{Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
			input("", "BOOL", []int64{0}, nil)}},
			`input #0: has no name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := oip.DecodeRequest(tc.req)
			if err == nil {
				t.Fatal("DecodeRequest accepted a malformed request")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tc.want)
			}
			if code := status.Code(err); code != codes.InvalidArgument {
				t.Fatalf("status code = %v, want InvalidArgument", code)
			}
		})
	}
}

func TestEncodeValidates(t *testing.T) {
	t.Parallel()
	bad := []oip.Tensor{
		oip.NewTensor("x", []int64{3}, []float32{1, 2}),
		{Name: "y", Datatype: oip.FP32, Shape: []int64{1}, Data: []float64{1}},
		{Name: "z", Datatype: "NOPE", Shape: []int64{1}, Data: []float64{1}},
	}
	for _, tt := range bad {
		_, err := oip.EncodeRequest(&oip.InferRequest{Inputs: []oip.Tensor{tt}})
		var te *oip.TensorError
		if !errors.As(err, &te) || te.Name != tt.Name || te.Kind != "input" {
			t.Errorf("tensor %q: err = %v, want a TensorError naming it", tt.Name, err)
		}
	}
}

func TestNumElements(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		shape []int64
		n     int64
		ok    bool
	}{
		{nil, 1, true}, {[]int64{0}, 0, true}, {[]int64{2, 3, 4}, 24, true},
		{[]int64{0, 1 << 62, 1 << 62}, 0, true}, {[]int64{1 << 62, 1 << 62}, 0, false}, {[]int64{3, -2}, 0, false},
	} {
		n, err := oip.NumElements(tc.shape)
		if (err == nil) != tc.ok || (tc.ok && n != tc.n) {
			t.Errorf("NumElements(%v) = %d, %v; want %d, ok=%v", tc.shape, n, err, tc.n, tc.ok)
		}
	}
}

func normShape(s []int64) []int64 {
	if len(s) == 0 {
		return nil
	}
	return s
}

// sameData compares tensor data bit for bit (so NaN and -0 compare by representation).
func sameData(a, b any) bool {
	switch x := a.(type) {
	case []float32:
		y, ok := b.([]float32)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				return false
			}
		}
		return true
	case []float64:
		y, ok := b.([]float64)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if math.Float64bits(x[i]) != math.Float64bits(y[i]) {
				return false
			}
		}
		return true
	case [][]byte:
		y, ok := b.([][]byte)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if string(x[i]) != string(y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
