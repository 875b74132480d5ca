package oip

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
)

// portableDecode decodes raw contents with encoding/binary alone: the reference that
// decodeFixed's copy on little-endian hosts must match.
func portableDecode[E rawElem](b []byte, n int64) []E {
	d := make([]E, n)
	if _, err := binary.Decode(b, binary.LittleEndian, d); err != nil {
		panic(err)
	}
	return d
}

func portableEncode[E rawElem](s []E) []byte {
	b, err := binary.Append(nil, binary.LittleEndian, s)
	if err != nil {
		panic(err)
	}
	return b
}

// sameRaw decodes b both ways, compares the results bit for bit and checks that encoding
// gives the same bytes back (except for BOOL, whose non-zero bytes all decode to true).
func sameRaw[E rawElem](t *testing.T, b []byte) {
	var zero E
	size := binary.Size(zero)
	n := int64(len(b) / size)
	b = b[:int(n)*size]
	fast, ref := decodeFixed[E](b, n), portableDecode[E](b, n)
	if !reflect.DeepEqual(portableEncode(fast), portableEncode(ref)) {
		t.Fatalf("%T: decodeFixed = %v, encoding/binary = %v", zero, fast, ref)
	}
	if _, isBool := any(zero).(bool); !isBool && string(encodeFixed(fast)) != string(b) {
		t.Fatalf("%T: raw bytes changed across a round trip: % x -> % x", zero, b, encodeFixed(fast))
	}
}

// FuzzRawCodec compares the raw codec with encoding/binary for every fixed-size element type.
func FuzzRawCodec(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x3f, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{2, 0, 1, 0xff, 0xfe, 0x7f, 0x80, 0x01, 0, 0, 0xf8, 0x7f, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sameRaw[bool](t, b)
		sameRaw[int8](t, b)
		sameRaw[uint8](t, b)
		sameRaw[int16](t, b)
		sameRaw[uint16](t, b)
		sameRaw[int32](t, b)
		sameRaw[uint32](t, b)
		sameRaw[float32](t, b)
		sameRaw[int64](t, b)
		sameRaw[uint64](t, b)
		sameRaw[float64](t, b)
	})
}

// BenchmarkRawCodec measures the copy that little-endian hosts use against encoding/binary's
// element-wise conversion, on a 4 MiB FP32 tensor. It is the evidence for keeping the copy.
func BenchmarkRawCodec(b *testing.B) {
	const n = 1 << 20
	values := make([]float32, n)
	for i := range values {
		values[i] = float32(math.Sin(float64(i)))
	}
	raw := portableEncode(values)
	for _, bc := range []struct {
		name string
		fn   func()
	}{
		{"decode/copy", func() { decodeFixed[float32](raw, n) }},
		{"decode/binary", func() { portableDecode[float32](raw, n) }},
		{"encode/copy", func() { encodeFixed(values) }},
		{"encode/binary", func() { b, _ := binary.Append(make([]byte, 0, len(raw)), binary.LittleEndian, values); _ = b }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if !littleEndian && strings.HasSuffix(bc.name, "copy") {
				b.Skip("the copy is used on little-endian hosts only")
			}
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				bc.fn()
			}
		})
	}
}
