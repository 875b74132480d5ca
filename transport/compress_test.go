package transport_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/infermesh/infermesh/transport"
)

// payload returns n bytes of compressible JSON-like text.
func payload(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"index":%d,"embedding":[0.%05d,-0.%05d]},`, i, i*7919%100000, i*104729%100000)
	}
	return b.Bytes()[:n]
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// echoServer decodes compressed requests with DecompressHandler and answers with the decoded
// body, recording the Content-Encoding it received. The response itself is compressed with
// the coding named in the X-Respond-With request header, if any.
func echoServer(t *testing.T, maxBytes int64) (*httptest.Server, *atomic.Value) {
	t.Helper()
	var seen atomic.Value
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if r.ContentLength >= 0 && r.ContentLength != int64(len(body)) {
			http.Error(w, "bad ContentLength", 500)
			return
		}
		if r.Header.Get("Content-Encoding") != "" {
			http.Error(w, "Content-Encoding left in place", 500)
			return
		}
		switch r.Header.Get("X-Respond-With") {
		case "gzip":
			w.Header().Set("Content-Encoding", "gzip")
			body = gzipBytes(t, body)
		case "zstd":
			w.Header().Set("Content-Encoding", "zstd")
			body = zstdBytes(t, body)
		}
		w.Write(body)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("Content-Encoding") + "|" + r.Header.Get("Accept-Encoding"))
		transport.DecompressHandler(inner, maxBytes).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestCompressorRoundTrip(t *testing.T) {
	t.Parallel()
	srv, seen := echoServer(t, 0)
	for _, enc := range []transport.Encoding{transport.EncodingGzip, transport.EncodingZstd} {
		for _, respond := range []string{"", "gzip", "zstd"} {
			t.Run(fmt.Sprintf("%s/respond-%s", enc, respond), func(t *testing.T) {
				base, _ := transport.New(transport.Config{})
				defer base.CloseIdleConnections()
				c, err := transport.NewCompressor(base, transport.CompressionConfig{Encoding: enc})
				if err != nil {
					t.Fatal(err)
				}
				body := payload(64 << 10)
				req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
				req.Header.Set("X-Respond-With", respond)
				resp, err := (&http.Client{Transport: c}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != 200 || !bytes.Equal(got, body) {
					t.Fatalf("status %d, echoed %d bytes (want %d): %.100s", resp.StatusCode, len(got), len(body), got)
				}
				if want := string(enc) + "|zstd,gzip"; seen.Load() != want {
					t.Errorf("server saw Content-Encoding|Accept-Encoding %q, want %q", seen.Load(), want)
				}
				if respond != "" && (!resp.Uncompressed || resp.Header.Get("Content-Encoding") != "") {
					t.Errorf("response not decoded transparently: Uncompressed %v, Content-Encoding %q",
						resp.Uncompressed, resp.Header.Get("Content-Encoding"))
				}
				if req.Header.Get("Content-Encoding") != "" || req.Header.Get("Accept-Encoding") != "" {
					t.Error("the caller's request was modified")
				}
			})
		}
	}
}

func TestCompressorThreshold(t *testing.T) {
	t.Parallel()
	srv, seen := echoServer(t, 0)
	c, err := transport.NewCompressor(nil, transport.CompressionConfig{Encoding: transport.EncodingZstd, MinSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	client := &http.Client{Transport: c}
	for _, tc := range []struct {
		name string
		body io.Reader
		size int
		want string
	}{
		{"below threshold", bytes.NewReader(payload(4095)), 4095, ""},
		{"at threshold", bytes.NewReader(payload(4096)), 4096, "zstd"},
		{"unknown length", io.MultiReader(bytes.NewReader(payload(8192))), 8192, ""},
		{"incompressible", bytes.NewReader(noise(8192)), 8192, ""},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, tc.body)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(got) != tc.size {
			t.Errorf("%s: echoed %d bytes, want %d", tc.name, len(got), tc.size)
		}
		if enc, _, _ := strings.Cut(seen.Load().(string), "|"); enc != tc.want {
			t.Errorf("%s: sent Content-Encoding %q, want %q", tc.name, enc, tc.want)
		}
	}
}

// noise returns incompressible bytes.
func noise(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// TestCompressorCallerAcceptEncoding: when the caller set Accept-Encoding, the response body
// is theirs to decode.
func TestCompressorCallerAcceptEncoding(t *testing.T) {
	t.Parallel()
	srv, seen := echoServer(t, 0)
	c, _ := transport.NewCompressor(nil, transport.CompressionConfig{})
	defer c.CloseIdleConnections()
	body := payload(2048)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("X-Respond-With", "gzip")
	resp, err := (&http.Client{Transport: c}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if seen.Load() != "gzip|gzip" {
		t.Errorf("server saw %q, want the caller's Accept-Encoding", seen.Load())
	}
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Uncompressed {
		t.Fatalf("response decoded although the caller asked for gzip itself")
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	if !bytes.Equal(got, body) {
		t.Error("caller-decoded body differs")
	}
}

// recordingTransport fails the first attempt after reading its body, then replays the request
// through GetBody, the way http.Transport replays a request on a stale pooled connection.
type recordingTransport struct {
	bodies   [][]byte
	encoding string
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	first, _ := io.ReadAll(req.Body)
	req.Body.Close()
	rt.bodies = append(rt.bodies, first)
	if req.GetBody == nil {
		return nil, errors.New("no GetBody")
	}
	replay, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	second, _ := io.ReadAll(replay)
	rt.bodies = append(rt.bodies, second)
	rt.encoding = req.Header.Get("Content-Encoding")
	if req.ContentLength != int64(len(first)) {
		return nil, fmt.Errorf("ContentLength %d, body %d", req.ContentLength, len(first))
	}
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

func TestCompressorReplayGetBody(t *testing.T) {
	t.Parallel()
	for _, enc := range []transport.Encoding{transport.EncodingGzip, transport.EncodingZstd} {
		rt := &recordingTransport{}
		c, _ := transport.NewCompressor(rt, transport.CompressionConfig{Encoding: enc, DisableResponseDecompression: true})
		body := payload(32 << 10)
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", bytes.NewReader(body))
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(rt.bodies) != 2 || !bytes.Equal(rt.bodies[0], rt.bodies[1]) {
			t.Fatalf("%s: replayed body differs from the first", enc)
		}
		if len(rt.bodies[0]) >= len(body) || rt.encoding != string(enc) {
			t.Fatalf("%s: sent %d bytes with Content-Encoding %q; want the compressed body", enc, len(rt.bodies[0]), rt.encoding)
		}
	}
}

// TestCompressorRetryOnStaleConnection: http.Transport replays a request whose pooled
// connection the server closed; the replay carries the same compressed body.
func TestCompressorRetryOnStaleConnection(t *testing.T) {
	t.Parallel()
	var requests atomic.Int64
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if requests.Add(1) == 2 {
			// Reset the connection without answering: the client's read on its reused
			// connection fails, and http.Transport replays the (idempotent) request.
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			return
		}
		fmt.Fprintf(w, "%d", len(got))
	})
	srv := httptest.NewServer(transport.DecompressHandler(inner, 0))
	defer srv.Close()
	base, _ := transport.New(transport.Config{})
	defer base.CloseIdleConnections()
	c, _ := transport.NewCompressor(base, transport.CompressionConfig{Encoding: transport.EncodingZstd})
	client := &http.Client{Transport: c}
	body := payload(16 << 10)
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set("Idempotency-Key", fmt.Sprint("req-", i)) // makes a POST replayable
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != fmt.Sprint(len(body)) {
			t.Fatalf("request %d: server decoded %s bytes, want %d", i, got, len(body))
		}
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3 (one replayed)", n)
	}
}

func TestCompressorBomb(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	huge := make([]byte, 64<<20) // zeros: 64 MiB that compress to a few KiB
	bombs := map[string][]byte{"gzip": gzipBytes(t, huge), "zstd": zstdBytes(t, huge)}
	for enc, bomb := range bombs {
		t.Run(enc, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", enc)
				w.Write(bomb)
			}))
			defer srv.Close()
			c, _ := transport.NewCompressor(nil, transport.CompressionConfig{MaxDecompressedBytes: limit})
			defer c.CloseIdleConnections()
			resp, err := (&http.Client{Transport: c}).Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			var lim *transport.DecompressionLimitError
			if !errors.As(err, &lim) || lim.Limit != limit {
				t.Fatalf("read %d bytes, err %v; want a DecompressionLimitError", n, err)
			}
			if n != limit {
				t.Errorf("read %d bytes before the error, want exactly the cap %d", n, limit)
			}
			if !strings.Contains(err.Error(), "1048576 bytes") {
				t.Errorf("error %q does not name the cap", err)
			}
			if v := transport.Classify(err); v.Retryable {
				t.Errorf("a bomb is classified retryable: %+v", v)
			}
		})
	}
}

func TestDecompressHandlerStatuses(t *testing.T) {
	t.Parallel()
	const limit = 1 << 16
	handlerRan := atomic.Int64{}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlerRan.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	srv := httptest.NewServer(transport.DecompressHandler(inner, limit))
	t.Cleanup(srv.Close)
	client := srv.Client()
	small := payload(1000)
	tests := []struct {
		name     string
		encoding string
		body     []byte
		status   int
		contains string
	}{
		{"plain", "", small, 200, "1000"},
		{"identity", "identity", small, 200, "1000"},
		{"gzip", "gzip", gzipBytes(t, small), 200, "1000"},
		{"x-gzip", "x-gzip", gzipBytes(t, small), 200, "1000"},
		{"zstd", "zstd", zstdBytes(t, small), 200, "1000"},
		{"zstd at cap", "zstd", zstdBytes(t, make([]byte, limit)), 200, "65536"},
		{"gzip bomb", "gzip", gzipBytes(t, make([]byte, 8<<20)), 413, "exceeds 65536 bytes after gzip decompression"},
		{"zstd bomb", "zstd", zstdBytes(t, make([]byte, 8<<20)), 413, "exceeds 65536 bytes after zstd decompression"},
		{"compressed too large", "gzip", bytes.Repeat(gzipBytes(t, nil), limit/20+1), 413, "compressed request body exceeds 65536 bytes"},
		{"corrupt gzip", "gzip", []byte("not gzip at all"), 400, "malformed gzip request body"},
		{"corrupt zstd", "zstd", []byte("not zstd at all"), 400, "malformed zstd request body"},
		{"truncated gzip", "gzip", gzipBytes(t, small)[:40], 400, "malformed gzip"},
		{"unsupported", "br", small, 415, `unsupported request Content-Encoding "br"`},
		{"stacked", "gzip, zstd", small, 415, "unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(tt.body))
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(got), tt.contains) {
				t.Errorf("got %d %q, want %d containing %q", resp.StatusCode, got, tt.status, tt.contains)
			}
			if tt.status == 415 && resp.Header.Get("Accept-Encoding") != "zstd, gzip" {
				t.Errorf("415 without Accept-Encoding: %q", resp.Header.Get("Accept-Encoding"))
			}
		})
	}
}

func TestCompressorInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		c    transport.CompressionConfig
		want string
	}{
		{transport.CompressionConfig{Encoding: "br"}, `CompressionConfig.Encoding "br"`},
		{transport.CompressionConfig{Level: 9}, "CompressionConfig.Level 9"},
		{transport.CompressionConfig{MinSize: -1}, "CompressionConfig.MinSize -1"},
		{transport.CompressionConfig{MaxDecompressedBytes: -5}, "CompressionConfig.MaxDecompressedBytes -5"},
	}
	for _, tt := range tests {
		if _, err := transport.NewCompressor(nil, tt.c); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewCompressor(%+v) error %v, want one naming %q", tt.c, err, tt.want)
		}
	}
}

func TestCompressorLevels(t *testing.T) {
	t.Parallel()
	body := payload(64 << 10)
	for _, enc := range []transport.Encoding{transport.EncodingGzip, transport.EncodingZstd} {
		for _, lvl := range []transport.Level{transport.LevelDefault, transport.LevelFastest, transport.LevelBetter, transport.LevelBest} {
			rt := &recordingTransport{}
			c, err := transport.NewCompressor(rt, transport.CompressionConfig{Encoding: enc, Level: lvl})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", bytes.NewReader(body))
			if _, err := c.RoundTrip(req); err != nil {
				t.Fatal(err)
			}
			if rt.encoding != string(enc) || len(rt.bodies[0]) >= len(body)/2 {
				t.Errorf("%s level %d: %d bytes with %q", enc, lvl, len(rt.bodies[0]), rt.encoding)
			}
		}
	}
}

type closeCounter struct {
	http.RoundTripper
	n atomic.Int64
}

func (c *closeCounter) CloseIdleConnections() { c.n.Add(1) }

func TestCompressorForwardsCloseIdleAndUnwrap(t *testing.T) {
	t.Parallel()
	base := &closeCounter{RoundTripper: http.DefaultTransport}
	c, _ := transport.NewCompressor(base, transport.CompressionConfig{})
	(&http.Client{Transport: c}).CloseIdleConnections()
	if base.n.Load() != 1 {
		t.Error("CloseIdleConnections not forwarded to the base transport")
	}
	if c.Unwrap() != base {
		t.Error("Unwrap does not return the base transport")
	}
}

func TestCompressorBodyLengthMismatch(t *testing.T) {
	t.Parallel()
	c, _ := transport.NewCompressor(&recordingTransport{}, transport.CompressionConfig{})
	for _, tc := range []struct {
		name string
		n    int64
		want string
	}{
		{"short", 4096, "shorter than its ContentLength 4096"},
		{"long", 1024, "longer than its ContentLength 1024"},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", bytes.NewReader(payload(2048)))
		req.ContentLength = tc.n
		if _, err := c.RoundTrip(req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
}
