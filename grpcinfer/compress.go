package grpcinfer

import (
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // registers the "gzip" compressor
)

// Compressor names accepted by [ClientConfig.Compressor]. Importing this package registers
// both with gRPC (gzip through grpc-go's own encoding/gzip package), so a server built with
// any options can read them and answers in the compressor the client used.
const (
	Zstd = "zstd"
	Gzip = "gzip"
)

// zstdMaxWindow caps the window a zstd frame may ask the decoder to allocate. Encoders in this
// package use the default window (at most 8 MiB), as do other common gRPC zstd codecs; a frame
// that asks for more is rejected instead of allocating it.
const zstdMaxWindow = 64 << 20

// zstdCompressor is a gRPC encoding.Compressor over klauspost/compress/zstd. Encoders and
// decoders are pooled and reused; both run synchronously (concurrency 1), so no goroutines
// outlive a call.
//
// The decompressed size needs no cap of its own: gRPC reads at most MaxRecvMsgSize+1 bytes
// from the reader Decompress returns and fails the call with RESOURCE_EXHAUSTED beyond that,
// so a small frame that expands to gigabytes is never fully decoded.
type zstdCompressor struct {
	encoders sync.Pool // *zstdWriter
	decoders sync.Pool // *zstdReader
}

func init() {
	// gRPC's compressor registry is global by design; registering at init is how grpc-go's
	// own gzip package does it. The compressor itself holds only pools.
	encoding.RegisterCompressor(&zstdCompressor{})
}

func (c *zstdCompressor) Name() string { return Zstd }

type zstdWriter struct {
	*zstd.Encoder
	c *zstdCompressor
}

func (w *zstdWriter) Close() error {
	err := w.Encoder.Close()
	w.Encoder.Reset(nil) // drop the reference to the destination before pooling
	w.c.encoders.Put(w)
	return err
}

func (c *zstdCompressor) Compress(dst io.Writer) (io.WriteCloser, error) {
	if w, ok := c.encoders.Get().(*zstdWriter); ok {
		w.Encoder.Reset(dst)
		return w, nil
	}
	enc, err := zstd.NewWriter(dst,
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(false), // gRPC frames are already checked by TCP/TLS and HTTP/2
	)
	if err != nil {
		return nil, err
	}
	return &zstdWriter{Encoder: enc, c: c}, nil
}

type zstdReader struct {
	dec  *zstd.Decoder
	c    *zstdCompressor
	done bool
}

func (r *zstdReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, io.EOF
	}
	n, err := r.dec.Read(p)
	if errors.Is(err, io.EOF) {
		r.release()
	}
	return n, err
}

// Close returns the decoder to the pool; gRPC calls it after reading a message.
func (r *zstdReader) Close() error {
	r.release()
	return nil
}

func (r *zstdReader) release() {
	if r.done {
		return
	}
	r.done = true
	_ = r.dec.Reset(nil)
	r.c.decoders.Put(&zstdReader{dec: r.dec, c: r.c})
}

func (c *zstdCompressor) Decompress(src io.Reader) (io.Reader, error) {
	if r, ok := c.decoders.Get().(*zstdReader); ok {
		if err := r.dec.Reset(src); err != nil {
			return nil, err
		}
		return r, nil
	}
	dec, err := zstd.NewReader(src,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow),
	)
	if err != nil {
		return nil, err
	}
	return &zstdReader{dec: dec, c: c}, nil
}
