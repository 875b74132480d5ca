package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzhttp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Encoding is an HTTP content coding for request bodies.
type Encoding string

const (
	// EncodingGzip is gzip (RFC 1952), the coding servers that accept compressed requests
	// (RFC 7694) most often understand.
	EncodingGzip Encoding = "gzip"
	// EncodingZstd is Zstandard (RFC 8878). At the default levels it compresses as fast as
	// this package's gzip and to about the same size on the JSON measured (ratio about 2.5 for
	// embeddings, whose float digits are nearly random, and about 5 for chat text). Use it
	// when the server is known to accept it, as [DecompressHandler] does.
	EncodingZstd Encoding = "zstd"
	// EncodingIdentity never compresses request bodies; responses are still decoded.
	EncodingIdentity Encoding = "identity"
)

// Level is a codec-neutral compression level.
type Level int

const (
	// LevelDefault (the zero value) is zstd's SpeedDefault (about zstd level 3) and gzip level 5.
	LevelDefault Level = iota
	// LevelFastest is zstd's SpeedFastest (about zstd level 1) and gzip level 1.
	LevelFastest
	// LevelBetter is zstd's SpeedBetterCompression (about zstd level 7) and gzip level 7.
	LevelBetter
	// LevelBest is zstd's SpeedBestCompression (about zstd level 11) and gzip level 9.
	LevelBest
)

const (
	// DefaultCompressMinSize is the smallest request body that is compressed (1 KiB). Below
	// it the coding's framing and the CPU cost outweigh the bytes saved.
	DefaultCompressMinSize = 1 << 10

	// DefaultMaxDecompressedBytes caps a decompressed body (64 MiB): enough for a large
	// batch of embeddings in JSON, far below what a decompression bomb would expand to.
	DefaultMaxDecompressedBytes = 64 << 20

	// maxZstdWindow is the largest zstd window a decoder accepts (as gzhttp's decoders do).
	maxZstdWindow = 32 << 20

	// maxPooledBuffer is the largest read buffer kept for reuse.
	maxPooledBuffer = 4 << 20
)

// CompressionConfig configures [NewCompressor]. The zero value compresses request bodies of
// at least 1 KiB with gzip at [LevelDefault] and decodes zstd and gzip responses up to
// 64 MiB.
//
// Compression costs CPU at roughly 80 to 200 MB/s per core. It pays off when the body crosses
// a real network (a sidecar forwards the compressed body as it is); to a server on the same
// node it only costs time.
type CompressionConfig struct {
	// Encoding is the request body coding. Empty means [EncodingGzip].
	Encoding Encoding

	// Level is the compression level. Zero means [LevelDefault].
	Level Level

	// MinSize is the smallest request body, in bytes, that is compressed. Zero means
	// [DefaultCompressMinSize]. Bodies of unknown length (ContentLength -1, a stream) are
	// never compressed: that would need the whole stream in memory first.
	MinSize int64

	// MaxDecompressedBytes caps the decoded size of a compressed response body. Reading past
	// it fails with a [*DecompressionLimitError]. Zero means [DefaultMaxDecompressedBytes].
	MaxDecompressedBytes int64

	// DisableResponseDecompression stops the Compressor from sending Accept-Encoding and
	// decoding responses. A response that the base transport decoded itself is still capped.
	DisableResponseDecompression bool
}

// DecompressionLimitError is returned when a decompressed body grows past its cap, by reads
// from a response body of a [Compressor]. [DecompressHandler] answers 413 for the same case.
type DecompressionLimitError struct {
	// Limit is the cap in bytes.
	Limit int64
}

// Error names the cap and the field that sets it.
func (e *DecompressionLimitError) Error() string {
	return fmt.Sprintf("transport: decompressed body exceeds the cap of %d bytes (MaxDecompressedBytes); "+
		"refusing to read more (a compression bomb, or raise the cap)", e.Limit)
}

// Compressor is an [http.RoundTripper] that compresses request bodies and decodes compressed
// responses. It is safe for concurrent use.
//
// A request is compressed when its body length is known and at least MinSize, it has no
// Content-Encoding yet, and compression makes it smaller. The outgoing request is a clone:
// Content-Encoding and ContentLength are set, and its GetBody returns the compressed bytes, so
// a replay by the base transport (or anything else calling GetBody on that clone) sends the
// same compressed body. The caller's request is not modified; its body is read and closed.
//
// Unless the caller set Accept-Encoding itself (then the response body is left to the caller,
// still compressed) or it is a HEAD or Range request, the Compressor asks for "zstd,gzip" and
// decodes the response transparently: Content-Encoding and Content-Length are removed and
// resp.Uncompressed is set. Any body decoded on the way is capped at MaxDecompressedBytes.
// Encoders and decoders are pooled and reused.
type Compressor struct {
	base     http.RoundTripper
	next     http.RoundTripper // base, wrapped by gzhttp's decoding transport unless disabled
	encoding Encoding
	minSize  int64
	maxBytes int64
	gzLevel  int
	zenc     *zstd.Encoder // EncodeAll is safe for concurrent use and reuses its encoders
	gzPool   sync.Pool     // *gzip.Writer
	bufPool  sync.Pool     // *[]byte read buffers
}

var _ http.RoundTripper = (*Compressor)(nil)

// NewCompressor returns a Compressor sending through base; a nil base means
// [http.DefaultTransport]. An invalid CompressionConfig returns an error naming the field.
func NewCompressor(base http.RoundTripper, c CompressionConfig) (*Compressor, error) {
	if base == nil {
		base = http.DefaultTransport
	}
	cp := &Compressor{
		base:     base,
		next:     base,
		encoding: c.Encoding,
		minSize:  c.MinSize,
		maxBytes: c.MaxDecompressedBytes,
	}
	switch c.Encoding {
	case "":
		cp.encoding = EncodingGzip
	case EncodingGzip, EncodingZstd, EncodingIdentity:
	default:
		return nil, compressionFieldError("Encoding", fmt.Sprintf("%q", string(c.Encoding)), "want gzip, zstd or identity")
	}
	var zlevel zstd.EncoderLevel
	switch c.Level {
	case LevelDefault:
		zlevel, cp.gzLevel = zstd.SpeedDefault, 5
	case LevelFastest:
		zlevel, cp.gzLevel = zstd.SpeedFastest, gzip.BestSpeed
	case LevelBetter:
		zlevel, cp.gzLevel = zstd.SpeedBetterCompression, 7
	case LevelBest:
		zlevel, cp.gzLevel = zstd.SpeedBestCompression, gzip.BestCompression
	default:
		return nil, compressionFieldError("Level", int(c.Level), "unknown level")
	}
	switch {
	case c.MinSize < 0:
		return nil, compressionFieldError("MinSize", c.MinSize, "must not be negative")
	case c.MinSize == 0:
		cp.minSize = DefaultCompressMinSize
	}
	switch {
	case c.MaxDecompressedBytes < 0:
		return nil, compressionFieldError("MaxDecompressedBytes", c.MaxDecompressedBytes, "must not be negative")
	case c.MaxDecompressedBytes == 0:
		cp.maxBytes = DefaultMaxDecompressedBytes
	}
	if cp.encoding == EncodingZstd {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zlevel))
		if err != nil {
			return nil, fmt.Errorf("transport: zstd encoder: %w", err)
		}
		cp.zenc = enc
	}
	if !c.DisableResponseDecompression {
		cp.next = gzhttp.Transport(base, gzhttp.TransportEnableZstd(true), gzhttp.TransportEnableGzip(true))
	}
	return cp, nil
}

func compressionFieldError(field string, value any, why string) error {
	return fmt.Errorf("transport: invalid CompressionConfig.%s %v: %s", field, value, why)
}

// RoundTrip implements [http.RoundTripper].
func (c *Compressor) RoundTrip(req *http.Request) (*http.Response, error) {
	out, err := c.compressRequest(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.next.RoundTrip(out)
	if err != nil {
		return resp, err
	}
	if resp.Uncompressed && resp.Body != nil {
		resp.Body = &cappedBody{rc: resp.Body, remaining: c.maxBytes, limit: c.maxBytes}
	}
	return resp, nil
}

// CloseIdleConnections closes idle connections of the base transport, if it can.
func (c *Compressor) CloseIdleConnections() {
	if ci, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// Unwrap returns the base transport.
func (c *Compressor) Unwrap() http.RoundTripper { return c.base }

func (c *Compressor) compressRequest(req *http.Request) (*http.Request, error) {
	if c.encoding == EncodingIdentity || req.Body == nil || req.Body == http.NoBody ||
		req.ContentLength < c.minSize || len(req.Header.Values("Content-Encoding")) > 0 {
		return req, nil
	}
	raw, bp, err := c.readBody(req)
	if err != nil {
		return nil, err
	}
	comp := c.compress(raw)
	compressed := len(comp) < len(raw)
	if !compressed {
		// Not worth it: send the original bytes, copied out of the pooled buffer.
		comp = append([]byte(nil), raw...)
	}
	c.putBuffer(bp)
	out := req.Clone(req.Context())
	setBody(out, comp)
	if compressed {
		out.Header.Set("Content-Encoding", string(c.encoding))
	}
	return out, nil
}

// readBody reads exactly req.ContentLength bytes of req.Body into a pooled buffer and closes
// the body, as a RoundTripper must.
func (c *Compressor) readBody(req *http.Request) ([]byte, *[]byte, error) {
	defer req.Body.Close()
	n := req.ContentLength
	bp, _ := c.bufPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	if int64(cap(*bp)) < n {
		*bp = make([]byte, n)
	}
	buf := (*bp)[:n]
	if _, err := io.ReadFull(req.Body, buf); err != nil {
		c.putBuffer(bp)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("transport: request body shorter than its ContentLength %d", n)
		}
		return nil, nil, fmt.Errorf("transport: reading request body: %w", err)
	}
	var one [1]byte
	if m, _ := io.ReadFull(req.Body, one[:]); m > 0 {
		c.putBuffer(bp)
		return nil, nil, fmt.Errorf("transport: request body longer than its ContentLength %d", n)
	}
	return buf, bp, nil
}

func (c *Compressor) putBuffer(bp *[]byte) {
	if cap(*bp) <= maxPooledBuffer {
		c.bufPool.Put(bp)
	}
}

// compress returns a new slice holding raw in the Compressor's coding.
func (c *Compressor) compress(raw []byte) []byte {
	if c.encoding == EncodingZstd {
		return c.zenc.EncodeAll(raw, make([]byte, 0, len(raw)/2+64))
	}
	out := bytes.NewBuffer(make([]byte, 0, len(raw)/2+64))
	zw, _ := c.gzPool.Get().(*gzip.Writer)
	if zw == nil {
		// The level was validated by NewCompressor, so this cannot fail.
		zw, _ = gzip.NewWriterLevel(out, c.gzLevel)
	} else {
		zw.Reset(out)
	}
	// Writes to a bytes.Buffer cannot fail.
	_, _ = zw.Write(raw)
	_ = zw.Close()
	zw.Reset(io.Discard) // drop the reference to out
	c.gzPool.Put(zw)
	return out.Bytes()
}

func setBody(r *http.Request, b []byte) {
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.Header.Del("Content-Length")
}

// cappedBody fails reads past limit decoded bytes with a *DecompressionLimitError.
type cappedBody struct {
	rc        io.ReadCloser
	remaining int64
	limit     int64
	err       error
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.remaining+1 {
		p = p[:b.remaining+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.remaining {
		n = int(b.remaining)
		b.remaining = 0
		b.err = &DecompressionLimitError{Limit: b.limit}
		return n, b.err
	}
	b.remaining -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// DecompressHandler returns middleware that decodes zstd and gzip request bodies (RFC 7694)
// before calling h, with at most maxBytes bytes after decoding; maxBytes <= 0 means
// [DefaultMaxDecompressedBytes]. The compressed input is also limited to maxBytes.
//
// The decoded body is read in full before h runs, so every problem has a clear status and h
// never sees a half-decoded body: 413 when the body exceeds the cap (compressed or decoded),
// 400 when it is malformed, and 415 with an Accept-Encoding: zstd, gzip header for any other
// coding. h then gets the decoded body with an exact ContentLength and without
// Content-Encoding. Requests without Content-Encoding (or "identity") pass through untouched.
// Decoders are pooled per handler.
func DecompressHandler(h http.Handler, maxBytes int64) http.Handler {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxDecompressedBytes
	}
	d := &decoders{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		coding := strings.ToLower(strings.TrimSpace(strings.Join(r.Header.Values("Content-Encoding"), ",")))
		switch coding {
		case "", "identity":
			h.ServeHTTP(w, r)
			return
		case "gzip", "x-gzip", "zstd":
		default:
			w.Header().Set("Accept-Encoding", "zstd, gzip")
			http.Error(w, fmt.Sprintf("unsupported request Content-Encoding %q: this server accepts zstd and gzip",
				truncate(coding, 64)), http.StatusUnsupportedMediaType)
			return
		}
		var buf bytes.Buffer
		if r.Body != nil && r.Body != http.NoBody {
			err := d.decode(coding, http.MaxBytesReader(w, r.Body, maxBytes), maxBytes, &buf)
			var mbe *http.MaxBytesError
			var lim *DecompressionLimitError
			switch {
			case err == nil:
			case errors.As(err, &lim):
				http.Error(w, fmt.Sprintf("request body exceeds %d bytes after %s decompression", maxBytes, coding),
					http.StatusRequestEntityTooLarge)
				return
			case errors.As(err, &mbe):
				http.Error(w, fmt.Sprintf("compressed request body exceeds %d bytes", maxBytes),
					http.StatusRequestEntityTooLarge)
				return
			case errors.Is(err, zstd.ErrWindowSizeExceeded):
				http.Error(w, fmt.Sprintf("zstd request body needs a window above %d bytes", maxZstdWindow),
					http.StatusRequestEntityTooLarge)
				return
			default:
				http.Error(w, fmt.Sprintf("malformed %s request body: %v", coding, err), http.StatusBadRequest)
				return
			}
		}
		r2 := new(http.Request)
		*r2 = *r
		r2.Header = r.Header.Clone()
		r2.Header.Del("Content-Encoding")
		r2.Header.Del("Content-Length")
		body := buf.Bytes()
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
		r2.GetBody = nil
		h.ServeHTTP(w, r2)
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// decoders pools zstd and gzip decoders.
type decoders struct {
	gz   sync.Pool // *gzip.Reader
	zstd sync.Pool // *zstd.Decoder
}

// decode decodes src (coding "gzip", "x-gzip" or "zstd") into dst, failing with a
// *DecompressionLimitError once more than limit bytes come out.
func (d *decoders) decode(coding string, src io.Reader, limit int64, dst *bytes.Buffer) error {
	var r io.Reader
	switch coding {
	case "zstd":
		zr, _ := d.zstd.Get().(*zstd.Decoder)
		if zr == nil {
			var err error
			zr, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(maxZstdWindow))
			if err != nil {
				return err
			}
		}
		if err := zr.Reset(src); err != nil {
			return err
		}
		defer func() {
			_ = zr.Reset(nil)
			d.zstd.Put(zr)
		}()
		r = zr
	default:
		zr, _ := d.gz.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		if err := zr.Reset(src); err != nil {
			d.gz.Put(zr)
			if errors.Is(err, io.EOF) {
				return errors.New("empty gzip stream")
			}
			return err
		}
		defer func() {
			_ = zr.Close()
			d.gz.Put(zr)
		}()
		r = zr
	}
	n, err := dst.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return err
	}
	if n > limit {
		return &DecompressionLimitError{Limit: limit}
	}
	return nil
}
