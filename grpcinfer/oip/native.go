package oip

import "unsafe"

// littleEndian reports whether the host stores integers little-endian, as the protocol's raw
// contents do; then numeric tensors convert to and from raw bytes with one copy.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

type fixedElem interface {
	int16 | uint16 | int32 | uint32 | float32 | int64 | uint64 | float64
}

// asBytes views a numeric slice as its bytes in host order.
func asBytes[E fixedElem](s []E) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// copyRaw copies little-endian raw bytes into dst on a little-endian host and reports
// whether it did; len(b) must be len(dst) times the element size.
func copyRaw[E fixedElem](dst []E, b []byte) bool {
	if !littleEndian {
		return false
	}
	copy(asBytes(dst), b)
	return true
}

// appendRaw returns s as little-endian raw bytes (a copy) on a little-endian host; ok is
// false elsewhere.
func appendRaw[E fixedElem](s []E) ([]byte, bool) {
	if !littleEndian {
		return nil, false
	}
	return append([]byte(nil), asBytes(s)...), true
}
