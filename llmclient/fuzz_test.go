package llmclient_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient"
)

// bodyTransport answers every request with a fixed 200 body.
type bodyTransport struct {
	contentType string
	body        []byte
}

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {b.contentType}},
		Body: io.NopCloser(bytes.NewReader(b.body)), Request: r}, nil
}

// FuzzUpstreamBody serves arbitrary bytes as a stream and as a JSON answer: the client
// never panics, and every call ends with a body read to its end or a typed error.
func FuzzUpstreamBody(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\"}}\n\n"))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"con"))
	f.Add([]byte(`{"id":"x","choices":[{"message":{"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}`))
	f.Add([]byte(`{"error":{"message":"bad","code":42}}`))
	f.Add([]byte(": ping\r\n\r\ndata:{\"choices\":[],\"usage\":{\"total_tokens\":3}}\r\r"))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, stream := range []bool{true, false} {
			ct := "application/json"
			if stream {
				ct = "text/event-stream"
			}
			routes := llmclient.DefaultRoutes()
			for i := range routes {
				routes[i].Policy.MaxAttempts = 1
			}
			hc, err := llmclient.NewHTTPClient(llmclient.Config{Base: bodyTransport{ct, body}, Routes: routes, MaxEventBytes: 4096})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodPost, "http://fuzz.invalid/v1/chat/completions",
				strings.NewReader(map[bool]string{true: `{"model":"m","stream":true}`, false: `{"model":"m"}`}[stream]))
			resp, err := hc.Do(req)
			if err != nil {
				checkTyped(t, err)
				continue
			}
			_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if err != nil {
				checkTyped(t, err)
			}
		}
	})
}

func checkTyped(t *testing.T, err error) {
	t.Helper()
	var se *llmclient.StreamError
	var ae *llmclient.APIError
	if errors.As(err, &se) || errors.As(err, &ae) || errors.Is(err, llmclient.ErrMalformedResponse) ||
		errors.Is(err, llmclient.ErrStreamBroken) || errors.Is(err, llmclient.ErrResponseTooLarge) {
		return
	}
	t.Fatalf("untyped error %T: %v", err, err)
}
