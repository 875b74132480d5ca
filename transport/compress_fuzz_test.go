package transport_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/infermesh/infermesh/transport"
)

// FuzzDecompressHandler feeds arbitrary bodies to the server-side decoders: they never panic,
// never hand the handler more than the cap, and answer 200, 400 or 413.
func FuzzDecompressHandler(f *testing.F) {
	f.Add(true, zstdBytes(f, payload(3000)))
	f.Add(false, gzipBytes(f, payload(3000)))
	f.Add(true, zstdBytes(f, make([]byte, 1<<20)))
	f.Add(false, gzipBytes(f, make([]byte, 1<<20)))
	f.Add(false, bytes.Repeat(gzipBytes(f, nil), 10))
	f.Add(true, []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58})
	f.Add(false, []byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff})
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, useZstd bool, body []byte) {
		var got int64 = -1
		h := transport.DecompressHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, _ = io.Copy(io.Discard, r.Body)
		}), limit)
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("Content-Encoding", map[bool]string{true: "zstd", false: "gzip"}[useZstd])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			if got < 0 || got > limit {
				t.Fatalf("handler got %d bytes (cap %d)", got, limit)
			}
		case 400, 413:
			if got != -1 {
				t.Fatal("handler ran despite an error status")
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}

// bodyTransport answers every request with a fixed, possibly compressed body.
type bodyTransport struct {
	encoding string
	body     []byte
}

func (b bodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h := http.Header{}
	h.Set("Content-Encoding", b.encoding)
	return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(bytes.NewReader(b.body)),
		ContentLength: int64(len(b.body)), Request: req}, nil
}

// FuzzCompressorResponse feeds arbitrary compressed responses to the client-side decoders: no
// panic, never more than the cap, and a cap overrun is a DecompressionLimitError.
func FuzzCompressorResponse(f *testing.F) {
	f.Add(true, zstdBytes(f, payload(3000)))
	f.Add(false, gzipBytes(f, payload(3000)))
	f.Add(true, zstdBytes(f, make([]byte, 1<<20)))
	f.Add(false, gzipBytes(f, make([]byte, 1<<20)))
	f.Add(false, []byte("plain text"))
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, useZstd bool, body []byte) {
		enc := map[bool]string{true: "zstd", false: "gzip"}[useZstd]
		c, err := transport.NewCompressor(bodyTransport{enc, body}, transport.CompressionConfig{MaxDecompressedBytes: limit})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if n > limit {
			t.Fatalf("read %d bytes past the cap %d", n, limit)
		}
		var lim *transport.DecompressionLimitError
		if n == limit && err == nil {
			// Exactly at the cap is fine only if the stream ended there.
			return
		}
		if errors.As(err, &lim) && n != limit {
			t.Fatalf("limit error after %d bytes", n)
		}
	})
}
