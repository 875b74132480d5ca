package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/infermesh/infermesh/transport"
)

func ExampleNew() {
	// A pooled transport for calls that a local Istio sidecar intercepts.
	tr, err := transport.New(transport.Config{Preset: transport.PresetSidecar})
	if err != nil {
		panic(err)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	_ = client
	fmt.Println(tr.MaxIdleConnsPerHost, tr.IdleConnTimeout, tr.Protocols)
	// Output: 64 50s {HTTP1}
}

func ExampleNew_h2c() {
	tr, err := transport.New(transport.Config{H2C: true})
	if err != nil {
		panic(err)
	}
	fmt.Println(tr.Protocols)
	// Output: {HTTP2,UnencryptedHTTP2}
}

func ExampleNewCompressor() {
	// A server that accepts compressed request bodies.
	srv := httptest.NewServer(transport.DecompressHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "decoded %d bytes", n)
	}), 1<<20))
	defer srv.Close()

	base, _ := transport.New(transport.Config{})
	defer base.CloseIdleConnections()
	c, err := transport.NewCompressor(base, transport.CompressionConfig{Encoding: transport.EncodingZstd})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: c}
	body := bytes.Repeat([]byte(`{"input":"hello"},`), 1000)
	resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	fmt.Println(string(reply))
	// Output: decoded 18000 bytes
}

func ExampleParseEnvoy() {
	resp := &http.Response{
		StatusCode: http.StatusServiceUnavailable,
		Header: http.Header{
			"Content-Type":       {"text/plain"},
			"X-Envoy-Overloaded": {"true"},
		},
		Body: io.NopCloser(strings.NewReader(
			"upstream connect error or disconnect/reset before headers. reset reason: overflow")),
	}
	e := transport.ParseEnvoy(resp)
	fmt.Println(e.Overloaded, e.Reset, e.ResetReason)
	body, _ := io.ReadAll(resp.Body) // the body is still whole
	fmt.Println(len(body))
	// Output:
	// true true overflow
	// 81
}

func ExampleParseRetryAfter() {
	h := http.Header{}
	h.Set("Retry-After", "2")
	h.Set("retry-after-ms", "1500")
	d, ok := transport.ParseRetryAfter(h, time.Now())
	fmt.Println(d, ok)
	// Output: 1.5s true
}

func ExampleClassifyResponse() {
	resp := &http.Response{
		StatusCode: http.StatusServiceUnavailable,
		Header:     http.Header{"Content-Type": {"text/plain"}},
		Body:       io.NopCloser(strings.NewReader("no healthy upstream")),
	}
	v := transport.ClassifyResponse(resp)
	fmt.Println(v.Outcome, v.Retryable, v.Class, v.Signals.NoHealthyUpstream)
	// Output: failure false unavailable true
}

func ExampleClassify() {
	resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"3"}}, Body: http.NoBody}
	err := fmt.Errorf("chat: %w", transport.NewStatusError(resp))
	v := transport.Classify(err)
	fmt.Println(err)
	fmt.Println(v.Outcome, v.Retryable, v.Class, v.RetryAfter)

	v = transport.Classify(context.Canceled)
	fmt.Println(v.Outcome, v.Class)
	// Output:
	// chat: transport: HTTP 429 Too Many Requests (retry after 3s)
	// failure true rate_limited 3s
	// excluded canceled
}

func ExampleDetectMesh() {
	// Tests and examples pass their own environment lookup instead of changing the process's.
	lookup := func(key string) (string, bool) {
		if key == "GRPC_XDS_BOOTSTRAP" {
			return "/etc/istio/proxy/grpc-bootstrap.json", true
		}
		return "", false
	}
	m, err := transport.DetectMesh(context.Background(), transport.DetectConfig{
		AnnotationsPath: "testdata/does-not-exist",
		LookupEnv:       lookup,
		DisableProbe:    true,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Kind, m.Preset(), m.Evidence)
	// Output: proxyless-grpc direct GRPC_XDS_BOOTSTRAP is set
}

func ExampleWaitForSidecar() {
	// A fake pilot-agent that is ready at once.
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz/ready" {
			http.NotFound(w, r)
		}
	}))
	defer agent.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := transport.WaitForSidecar(ctx, agent.Listener.Addr().String())
	fmt.Println(err)
	// Output: <nil>
}
