package oip

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// InferRequest is a decoded ModelInfer request.
type InferRequest struct {
	// ModelName is the model to run.
	ModelName string
	// ModelVersion is the model version; empty lets the server choose.
	ModelVersion string
	// ID is an optional request identifier, echoed in the response.
	ID string
	// Parameters are optional request parameters; nil means none.
	Parameters map[string]*inferencepb.InferParameter
	// Inputs are the input tensors.
	Inputs []Tensor
	// Outputs restricts the response to these outputs; empty asks for every output.
	Outputs []RequestedOutput
	// Raw selects raw_input_contents (little-endian bytes, one entry per input) instead of
	// the typed contents fields when encoding. Decoding sets it to what the request used.
	// FP16 and BF16 inputs force raw encoding whatever Raw says.
	Raw bool
}

// RequestedOutput names one output the caller wants back.
type RequestedOutput struct {
	// Name is the output's name.
	Name string
	// Parameters are optional per-output parameters; nil means none.
	Parameters map[string]*inferencepb.InferParameter
}

// InferResponse is a decoded ModelInfer response.
type InferResponse struct {
	// ModelName is the model that ran.
	ModelName string
	// ModelVersion is the model version that ran.
	ModelVersion string
	// ID echoes the request's ID.
	ID string
	// Parameters are optional response parameters; nil means none.
	Parameters map[string]*inferencepb.InferParameter
	// Outputs are the output tensors.
	Outputs []Tensor
	// Raw selects raw_output_contents when encoding, as [InferRequest.Raw] does for inputs.
	// Decoding sets it to what the response used.
	Raw bool
}

// Output returns the output tensor with the given name.
func (r *InferResponse) Output(name string) (Tensor, bool) {
	for _, t := range r.Outputs {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// EncodeRequest turns r into the protocol message, using raw contents when r.Raw is set or an
// input is FP16 or BF16. It validates every input first; errors are *[TensorError].
func EncodeRequest(r *InferRequest) (*inferencepb.ModelInferRequest, error) {
	raw := r.Raw || anyRawOnly(r.Inputs)
	m := &inferencepb.ModelInferRequest{
		ModelName:    r.ModelName,
		ModelVersion: r.ModelVersion,
		Id:           r.ID,
		Parameters:   r.Parameters,
		Inputs:       make([]*inferencepb.ModelInferRequest_InferInputTensor, len(r.Inputs)),
	}
	if raw {
		m.RawInputContents = make([][]byte, len(r.Inputs))
	}
	for i, t := range r.Inputs {
		contents, b, err := encodeTensor(t, raw)
		if err != nil {
			return nil, withKind(err, "input", i)
		}
		m.Inputs[i] = &inferencepb.ModelInferRequest_InferInputTensor{
			Name: t.Name, Datatype: string(t.Datatype), Shape: t.Shape, Parameters: t.Parameters, Contents: contents,
		}
		if raw {
			m.RawInputContents[i] = b
		}
	}
	for _, o := range r.Outputs {
		m.Outputs = append(m.Outputs, &inferencepb.ModelInferRequest_InferRequestedOutputTensor{Name: o.Name, Parameters: o.Parameters})
	}
	return m, nil
}

// DecodeRequest turns a protocol message into typed tensors. It checks every input: a known
// datatype, a valid shape, contents of the matching kind and exact size, and not both typed
// and raw contents. Errors are *[TensorError] or, for request-level problems, an
// INVALID_ARGUMENT status error; both carry INVALID_ARGUMENT for status.FromError.
func DecodeRequest(m *inferencepb.ModelInferRequest) (*InferRequest, error) {
	raw := len(m.GetRawInputContents()) > 0
	if raw && len(m.RawInputContents) != len(m.Inputs) {
		return nil, status.Errorf(codes.InvalidArgument, "oip: request has %d inputs but %d raw_input_contents entries", len(m.Inputs), len(m.RawInputContents))
	}
	r := &InferRequest{
		ModelName:    m.GetModelName(),
		ModelVersion: m.GetModelVersion(),
		ID:           m.GetId(),
		Parameters:   m.GetParameters(),
		Inputs:       make([]Tensor, len(m.Inputs)),
		Raw:          raw,
	}
	seen := make(map[string]struct{}, len(m.Inputs))
	for i, in := range m.Inputs {
		var b []byte
		if raw {
			b = m.RawInputContents[i]
		}
		t, err := decodeTensor(in.GetName(), Datatype(in.GetDatatype()), in.GetShape(), in.GetContents(), b, raw)
		if err != nil {
			return nil, withKind(err, "input", i)
		}
		if _, dup := seen[t.Name]; dup {
			return nil, &TensorError{Kind: "input", Index: i, Name: t.Name, Reason: "appears more than once"}
		}
		seen[t.Name] = struct{}{}
		t.Parameters = in.GetParameters()
		r.Inputs[i] = t
	}
	for _, o := range m.GetOutputs() {
		r.Outputs = append(r.Outputs, RequestedOutput{Name: o.GetName(), Parameters: o.GetParameters()})
	}
	return r, nil
}

// EncodeResponse turns r into the protocol message, using raw contents when r.Raw is set or an
// output is FP16 or BF16. It validates every output first; errors are *[TensorError].
func EncodeResponse(r *InferResponse) (*inferencepb.ModelInferResponse, error) {
	raw := r.Raw || anyRawOnly(r.Outputs)
	m := &inferencepb.ModelInferResponse{
		ModelName:    r.ModelName,
		ModelVersion: r.ModelVersion,
		Id:           r.ID,
		Parameters:   r.Parameters,
		Outputs:      make([]*inferencepb.ModelInferResponse_InferOutputTensor, len(r.Outputs)),
	}
	if raw {
		m.RawOutputContents = make([][]byte, len(r.Outputs))
	}
	for i, t := range r.Outputs {
		contents, b, err := encodeTensor(t, raw)
		if err != nil {
			return nil, withKind(err, "output", i)
		}
		m.Outputs[i] = &inferencepb.ModelInferResponse_InferOutputTensor{
			Name: t.Name, Datatype: string(t.Datatype), Shape: t.Shape, Parameters: t.Parameters, Contents: contents,
		}
		if raw {
			m.RawOutputContents[i] = b
		}
	}
	return m, nil
}

// DecodeResponse turns a protocol message into typed tensors, with the checks of
// [DecodeRequest].
func DecodeResponse(m *inferencepb.ModelInferResponse) (*InferResponse, error) {
	raw := len(m.GetRawOutputContents()) > 0
	if raw && len(m.RawOutputContents) != len(m.Outputs) {
		return nil, status.Errorf(codes.InvalidArgument, "oip: response has %d outputs but %d raw_output_contents entries", len(m.Outputs), len(m.RawOutputContents))
	}
	r := &InferResponse{
		ModelName:    m.GetModelName(),
		ModelVersion: m.GetModelVersion(),
		ID:           m.GetId(),
		Parameters:   m.GetParameters(),
		Outputs:      make([]Tensor, len(m.Outputs)),
		Raw:          raw,
	}
	for i, out := range m.Outputs {
		var b []byte
		if raw {
			b = m.RawOutputContents[i]
		}
		t, err := decodeTensor(out.GetName(), Datatype(out.GetDatatype()), out.GetShape(), out.GetContents(), b, raw)
		if err != nil {
			return nil, withKind(err, "output", i)
		}
		t.Parameters = out.GetParameters()
		r.Outputs[i] = t
	}
	return r, nil
}

func anyRawOnly(ts []Tensor) bool {
	for _, t := range ts {
		if t.Datatype.RawOnly() {
			return true
		}
	}
	return false
}

func withKind(err error, kind string, index int) error {
	if te, ok := err.(*TensorError); ok {
		te.Kind = kind
		te.Index = index
	}
	return err
}

// encodeTensor validates t and returns either its typed contents or its raw bytes.
func encodeTensor(t Tensor, raw bool) (*inferencepb.InferTensorContents, []byte, error) {
	if err := t.Validate(); err != nil {
		return nil, nil, err
	}
	if raw {
		b, err := encodeRaw(t)
		return nil, b, err
	}
	c := &inferencepb.InferTensorContents{}
	switch d := t.Data.(type) {
	case []bool:
		c.BoolContents = d
	case []int8:
		c.IntContents = widen[int8, int32](d)
	case []int16:
		c.IntContents = widen[int16, int32](d)
	case []int32:
		c.IntContents = d
	case []int64:
		c.Int64Contents = d
	case []uint8:
		c.UintContents = widen[uint8, uint32](d)
	case []uint16:
		// Validate has admitted UINT16 only: FP16 and BF16 always take the raw path.
		c.UintContents = widen[uint16, uint32](d)
	case []uint32:
		c.UintContents = d
	case []uint64:
		c.Uint64Contents = d
	case []float32:
		c.Fp32Contents = d
	case []float64:
		c.Fp64Contents = d
	case [][]byte:
		c.BytesContents = d
	}
	return c, nil, nil
}

func widen[S int8 | int16 | uint8 | uint16, D int32 | uint32](s []S) []D {
	d := make([]D, len(s))
	for i, v := range s {
		d[i] = D(v)
	}
	return d
}

// encodeRaw serialises a validated tensor as raw contents: little-endian, row-major, no
// padding; BYTES elements each prefixed by their length as a 4-byte little-endian integer.
func encodeRaw(t Tensor) ([]byte, error) {
	switch d := t.Data.(type) {
	case []bool:
		return encodeFixed(d), nil
	case []int8:
		return encodeFixed(d), nil
	case []uint8:
		return d, nil // already its own raw form; a Tensor does not copy its data
	case []int16:
		return encodeFixed(d), nil
	case []uint16:
		return encodeFixed(d), nil
	case []int32:
		return encodeFixed(d), nil
	case []uint32:
		return encodeFixed(d), nil
	case []float32:
		return encodeFixed(d), nil
	case []int64:
		return encodeFixed(d), nil
	case []uint64:
		return encodeFixed(d), nil
	case []float64:
		return encodeFixed(d), nil
	case [][]byte:
		return encodeRawBytes(t.Name, d)
	}
	return nil, &TensorError{Name: t.Name, Reason: fmt.Sprintf("unsupported Go data type %T", t.Data)}
}

// encodeRawBytes length-prefixes each BYTES element.
func encodeRawBytes(name string, d [][]byte) ([]byte, error) {
	size := 0
	for i, v := range d {
		if uint64(len(v)) > math.MaxUint32 {
			return nil, &TensorError{Name: name, Reason: fmt.Sprintf("BYTES element %d is longer than 4 GiB and cannot be length-prefixed", i)}
		}
		size += 4 + len(v)
	}
	b := make([]byte, 0, size)
	for _, v := range d {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b, nil
}

// decodeTensor checks the header fields and decodes either the typed contents or raw bytes.
func decodeTensor(name string, dt Datatype, shape []int64, c *inferencepb.InferTensorContents, raw []byte, isRaw bool) (Tensor, error) {
	t := Tensor{Name: name, Datatype: dt, Shape: shape}
	if name == "" {
		return t, &TensorError{Reason: "has no name"}
	}
	if !dt.Valid() {
		return t, &TensorError{Name: name, Reason: fmt.Sprintf("unknown datatype %q", echo(string(dt)))}
	}
	n, err := NumElements(shape)
	if err != nil {
		return t, &TensorError{Name: name, Reason: err.Error()}
	}
	if isRaw {
		if populated(c) != "" {
			return t, &TensorError{Name: name, Reason: fmt.Sprintf("sets %s although the message uses raw contents", populated(c))}
		}
		data, reason := decodeRaw(dt, n, shape, raw)
		if reason != "" {
			return t, &TensorError{Name: name, Reason: reason}
		}
		t.Data = data
		return t, nil
	}
	data, reason := decodeTyped(dt, n, shape, c)
	if reason != "" {
		return t, &TensorError{Name: name, Reason: reason}
	}
	t.Data = data
	return t, nil
}

// contentsField names the typed contents field that carries a datatype.
func contentsField(dt Datatype) string {
	switch dt {
	case Bool:
		return "bool_contents"
	case Int8, Int16, Int32:
		return "int_contents"
	case Int64:
		return "int64_contents"
	case Uint8, Uint16, Uint32:
		return "uint_contents"
	case Uint64:
		return "uint64_contents"
	case FP32:
		return "fp32_contents"
	case FP64:
		return "fp64_contents"
	case Bytes:
		return "bytes_contents"
	}
	return ""
}

// populated returns the name of the first non-empty contents field, or "".
func populated(c *inferencepb.InferTensorContents) string {
	return populatedExcept(c, "")
}

func populatedExcept(c *inferencepb.InferTensorContents, except string) string {
	if c == nil {
		return ""
	}
	fields := [...]struct {
		name string
		n    int
	}{
		{"bool_contents", len(c.BoolContents)},
		{"int_contents", len(c.IntContents)},
		{"int64_contents", len(c.Int64Contents)},
		{"uint_contents", len(c.UintContents)},
		{"uint64_contents", len(c.Uint64Contents)},
		{"fp32_contents", len(c.Fp32Contents)},
		{"fp64_contents", len(c.Fp64Contents)},
		{"bytes_contents", len(c.BytesContents)},
	}
	for _, f := range fields {
		if f.n > 0 && f.name != except {
			return f.name
		}
	}
	return ""
}

func decodeTyped(dt Datatype, n int64, shape []int64, c *inferencepb.InferTensorContents) (any, string) {
	if dt.RawOnly() {
		if n == 0 && populated(c) == "" {
			return []uint16{}, ""
		}
		return nil, fmt.Sprintf("datatype %s can only be sent as raw contents", dt)
	}
	field := contentsField(dt)
	if other := populatedExcept(c, field); other != "" {
		return nil, fmt.Sprintf("datatype %s takes %s but %s is set", dt, field, other)
	}
	count := func(got int) string {
		if int64(got) != n {
			return fmt.Sprintf("shape %s needs %d elements but %s has %d", shapeString(shape), n, field, got)
		}
		return ""
	}
	if c == nil {
		c = &inferencepb.InferTensorContents{}
	}
	switch dt {
	case Bool:
		return orEmpty(c.BoolContents), count(len(c.BoolContents))
	case Int32:
		return orEmpty(c.IntContents), count(len(c.IntContents))
	case Int64:
		return orEmpty(c.Int64Contents), count(len(c.Int64Contents))
	case Uint32:
		return orEmpty(c.UintContents), count(len(c.UintContents))
	case Uint64:
		return orEmpty(c.Uint64Contents), count(len(c.Uint64Contents))
	case FP32:
		return orEmpty(c.Fp32Contents), count(len(c.Fp32Contents))
	case FP64:
		return orEmpty(c.Fp64Contents), count(len(c.Fp64Contents))
	case Bytes:
		return orEmpty(c.BytesContents), count(len(c.BytesContents))
	case Int8:
		if r := count(len(c.IntContents)); r != "" {
			return nil, r
		}
		return narrow[int32, int8](c.IntContents, dt, math.MinInt8, math.MaxInt8)
	case Int16:
		if r := count(len(c.IntContents)); r != "" {
			return nil, r
		}
		return narrow[int32, int16](c.IntContents, dt, math.MinInt16, math.MaxInt16)
	case Uint8:
		if r := count(len(c.UintContents)); r != "" {
			return nil, r
		}
		return narrow[uint32, uint8](c.UintContents, dt, 0, math.MaxUint8)
	case Uint16:
		if r := count(len(c.UintContents)); r != "" {
			return nil, r
		}
		return narrow[uint32, uint16](c.UintContents, dt, 0, math.MaxUint16)
	}
	return nil, fmt.Sprintf("unknown datatype %q", echo(string(dt)))
}

func orEmpty[E any](s []E) []E {
	if s == nil {
		return []E{}
	}
	return s
}

func narrow[S int32 | uint32, D int8 | int16 | uint8 | uint16](s []S, dt Datatype, lo, hi int64) (any, string) {
	d := make([]D, len(s))
	for i, v := range s {
		if int64(v) < lo || int64(v) > hi {
			return nil, fmt.Sprintf("element %d (%d) is out of range for %s", i, v, dt)
		}
		d[i] = D(v)
	}
	return d, ""
}

// decodeRaw decodes little-endian raw contents of n elements.
func decodeRaw(dt Datatype, n int64, shape []int64, b []byte) (any, string) {
	if dt == Bytes {
		return decodeRawBytes(n, shape, b)
	}
	size := int64(dt.Size())
	if int64(len(b)) != n*size { // n <= maxElements, so n*size cannot overflow
		return nil, fmt.Sprintf("shape %s of %s needs %d raw bytes but has %d", shapeString(shape), dt, n*size, len(b))
	}
	switch dt {
	case Bool:
		return decodeFixed[bool](b, n), ""
	case Int8:
		return decodeFixed[int8](b, n), ""
	case Uint8:
		return decodeFixed[uint8](b, n), ""
	case Int16:
		return decodeFixed[int16](b, n), ""
	case Uint16, FP16, BF16:
		return decodeFixed[uint16](b, n), ""
	case Int32:
		return decodeFixed[int32](b, n), ""
	case Uint32:
		return decodeFixed[uint32](b, n), ""
	case FP32:
		return decodeFixed[float32](b, n), ""
	case Int64:
		return decodeFixed[int64](b, n), ""
	case Uint64:
		return decodeFixed[uint64](b, n), ""
	case FP64:
		return decodeFixed[float64](b, n), ""
	}
	return nil, fmt.Sprintf("unknown datatype %q", echo(string(dt)))
}

// decodeRawBytes splits raw BYTES contents: each element is a 4-byte little-endian length
// followed by that many bytes, and the elements must fill b exactly.
func decodeRawBytes(n int64, shape []int64, b []byte) (any, string) {
	if n > int64(len(b))/4 {
		return nil, fmt.Sprintf("shape %s needs %d BYTES elements but the raw contents have only %d bytes", shapeString(shape), n, len(b))
	}
	d := make([][]byte, n)
	off := 0
	for i := range d {
		if len(b)-off < 4 {
			return nil, fmt.Sprintf("raw BYTES contents end after %d of %d elements", i, n)
		}
		l := binary.LittleEndian.Uint32(b[off:])
		off += 4
		if uint64(l) > uint64(len(b)-off) {
			return nil, fmt.Sprintf("raw BYTES element %d claims %d bytes but only %d remain", i, l, len(b)-off)
		}
		d[i] = b[off : off+int(l) : off+int(l)]
		off += int(l)
	}
	if off != len(b) {
		return nil, fmt.Sprintf("raw BYTES contents have %d bytes left over after %d elements", len(b)-off, n)
	}
	return d, ""
}
