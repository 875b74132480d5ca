package oip

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// Datatype is a tensor element type as the protocol spells it ("FP32", "BYTES", ...).
type Datatype string

// The protocol's datatypes. The Go type a [Tensor] holds for each is listed in [Tensor].
const (
	Bool   Datatype = "BOOL"
	Uint8  Datatype = "UINT8"
	Uint16 Datatype = "UINT16"
	Uint32 Datatype = "UINT32"
	Uint64 Datatype = "UINT64"
	Int8   Datatype = "INT8"
	Int16  Datatype = "INT16"
	Int32  Datatype = "INT32"
	Int64  Datatype = "INT64"
	FP16   Datatype = "FP16"
	BF16   Datatype = "BF16"
	FP32   Datatype = "FP32"
	FP64   Datatype = "FP64"
	Bytes  Datatype = "BYTES"
)

// Size returns the size in bytes of one element in raw form: 1 for BOOL, UINT8 and INT8, up to
// 8 for the 64-bit types. It returns 0 for BYTES (whose elements vary in length) and -1 for a
// datatype the protocol does not define.
func (d Datatype) Size() int {
	switch d {
	case Bool, Uint8, Int8:
		return 1
	case Uint16, Int16, FP16, BF16:
		return 2
	case Uint32, Int32, FP32:
		return 4
	case Uint64, Int64, FP64:
		return 8
	case Bytes:
		return 0
	}
	return -1
}

// Valid reports whether the protocol defines d.
func (d Datatype) Valid() bool { return d.Size() >= 0 }

// RawOnly reports whether d can only travel as raw contents (FP16 and BF16: the typed
// contents message has no field for 16-bit floats).
func (d Datatype) RawOnly() bool { return d == FP16 || d == BF16 }

// Element is the set of Go element types a [Tensor] can hold.
type Element interface {
	bool | int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64 | float32 | float64 | []byte
}

// Tensor is one named input or output tensor with typed elements.
//
// Data holds the elements flattened in row-major order, with one Go type per datatype:
//
//	BOOL []bool     INT8 []int8     UINT8 []uint8     FP32 []float32
//	                INT16 []int16   UINT16 []uint16   FP64 []float64
//	                INT32 []int32   UINT32 []uint32   BYTES [][]byte
//	                INT64 []int64   UINT64 []uint64
//	FP16 and BF16 []uint16 (the IEEE half-precision or bfloat16 bit patterns)
//
// [NewTensor] fills Datatype from the slice type; [TensorData] reads Data back with a typed
// result. A Tensor does not copy the slices it is given.
type Tensor struct {
	// Name is the tensor's name.
	Name string
	// Datatype is the element type.
	Datatype Datatype
	// Shape is the tensor's shape; the product of its dimensions is the element count.
	Shape []int64
	// Data holds the elements (see the table above).
	Data any
	// Parameters are optional per-tensor parameters; nil means none.
	Parameters map[string]*inferencepb.InferParameter
}

// NewTensor returns a tensor whose datatype is inferred from the element type: []float32 gives
// FP32, [][]byte gives BYTES, []uint16 gives UINT16 (set Datatype to FP16 or BF16 afterwards
// for half-precision bit patterns). It does not check the shape; [Tensor.Validate] does.
func NewTensor[E Element](name string, shape []int64, data []E) Tensor {
	_, dt := describe(data)
	return Tensor{Name: name, Datatype: dt, Shape: shape, Data: data}
}

// TensorData returns t's elements as []E. It fails, naming the tensor, when t holds another
// element type.
func TensorData[E Element](t Tensor) ([]E, error) {
	d, ok := t.Data.([]E)
	if !ok {
		var zero []E
		return nil, fmt.Errorf("oip: tensor %q holds %s elements (%T), not %T", echo(t.Name), t.Datatype, t.Data, zero)
	}
	return d, nil
}

// describe returns the length of a Data slice and the datatype its Go type stands for
// (UINT16 for []uint16, which FP16 and BF16 also use); n is -1 and dt empty for any other
// value.
func describe(data any) (n int, dt Datatype) {
	switch d := data.(type) {
	case []bool:
		return len(d), Bool
	case []int8:
		return len(d), Int8
	case []int16:
		return len(d), Int16
	case []int32:
		return len(d), Int32
	case []int64:
		return len(d), Int64
	case []uint8:
		return len(d), Uint8
	case []uint16:
		return len(d), Uint16
	case []uint32:
		return len(d), Uint32
	case []uint64:
		return len(d), Uint64
	case []float32:
		return len(d), FP32
	case []float64:
		return len(d), FP64
	case [][]byte:
		return len(d), Bytes
	}
	return -1, ""
}

// Len returns the number of elements in Data, or -1 when Data is not one of the supported
// slice types.
func (t Tensor) Len() int {
	n, _ := describe(t.Data)
	return n
}

// Validate checks that t has a name, a datatype the protocol defines, a Data slice of the Go
// type that datatype takes, and as many elements as its shape implies.
func (t Tensor) Validate() error {
	if t.Name == "" {
		return &TensorError{Reason: "has no name"}
	}
	if !t.Datatype.Valid() {
		return &TensorError{Name: t.Name, Reason: fmt.Sprintf("unknown datatype %q", echo(string(t.Datatype)))}
	}
	if !goTypeMatches(t.Datatype, t.Data) {
		return &TensorError{Name: t.Name, Reason: fmt.Sprintf("datatype %s cannot hold Go data of type %T", t.Datatype, t.Data)}
	}
	n, err := NumElements(t.Shape)
	if err != nil {
		return &TensorError{Name: t.Name, Reason: err.Error()}
	}
	if int64(t.Len()) != n {
		return &TensorError{Name: t.Name, Reason: fmt.Sprintf("shape %s needs %d elements but data has %d", shapeString(t.Shape), n, t.Len())}
	}
	return nil
}

func goTypeMatches(dt Datatype, data any) bool {
	_, natural := describe(data)
	return natural != "" && (dt == natural || (natural == Uint16 && dt.RawOnly()))
}

// maxElements bounds the element count a shape may imply. It keeps the byte size of any raw
// tensor within int64 and far above any message gRPC will carry.
const maxElements = math.MaxInt64 / 16

// NumElements returns the number of elements a shape implies (1 for a scalar, empty shape).
// Negative dimensions and products that overflow are errors.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %s has negative dimension %d at index %d", shapeString(shape), d, i)
		}
		if d == 0 {
			n = 0
			continue
		}
		if n > maxElements/d {
			return 0, fmt.Errorf("shape %s has too many elements", shapeString(shape))
		}
		n *= d
	}
	return n, nil
}

// shapeString renders a shape for an error message, as "[2 3]". A shape comes from the
// request, so it is echoed within maxEcho bytes: rendering stops once that is passed.
func shapeString(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if b.Len() > maxEcho {
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	return echo(b.String())
}

// TensorError reports a malformed tensor: a bad shape, a datatype mismatch, or contents whose
// size does not match the shape. Its gRPC status is INVALID_ARGUMENT, so status.FromError and
// status.Code work on it and a server handler may return it as is.
type TensorError struct {
	// Kind is "input" or "output"; empty when the tensor stands alone.
	Kind string
	// Index is the tensor's position among the inputs or outputs (meaningful when Kind is set).
	Index int
	// Name is the tensor's name (possibly empty when the name itself is the problem).
	Name string
	// Reason says what is wrong.
	Reason string
}

// Error implements error.
func (e *TensorError) Error() string {
	var b strings.Builder
	b.WriteString("oip: ")
	if e.Kind != "" {
		b.WriteString(e.Kind)
		b.WriteByte(' ')
	} else {
		b.WriteString("tensor ")
	}
	if e.Name != "" {
		b.WriteString(strconv.Quote(echo(e.Name)))
	} else {
		b.WriteString("#")
		b.WriteString(strconv.Itoa(e.Index))
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// GRPCStatus returns an INVALID_ARGUMENT status carrying the error's text.
func (e *TensorError) GRPCStatus() *status.Status {
	return status.New(codes.InvalidArgument, e.Error())
}
