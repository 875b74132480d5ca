package grpcinfer_test

import (
	"bytes"
	"io"
	"testing"

	"google.golang.org/grpc/encoding"

	"github.com/infermesh/infermesh/grpcinfer"
)

// FuzzZstdDecompress: the registered zstd codec never panics on arbitrary input, reads
// within a bound, and round-trips what it compressed.
func FuzzZstdDecompress(f *testing.F) {
	c := encoding.GetCompressor(grpcinfer.Zstd)
	var sample bytes.Buffer
	w, _ := c.Compress(&sample)
	_, _ = w.Write(bytes.Repeat([]byte("tensor "), 100))
	_ = w.Close()
	f.Add(sample.Bytes())
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58})
	f.Add([]byte("not zstd"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if r, err := c.Decompress(bytes.NewReader(data)); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(r, 8<<20))
		}
		if back, _ := zstdRoundTrip(t, c, data); !bytes.Equal(back, data) {
			t.Fatalf("round trip: %d bytes back of %d", len(back), len(data))
		}
	})
}

// zstdRoundTrip compresses msg with c and decompresses it again; it returns what came
// back and the (closed) decompressing reader.
func zstdRoundTrip(t testing.TB, c encoding.Compressor, msg []byte) ([]byte, io.Reader) {
	t.Helper()
	var buf bytes.Buffer
	w, err := c.Compress(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := c.Decompress(&buf)
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if cl, ok := r.(io.Closer); ok {
		_ = cl.Close()
	}
	return back, r
}
