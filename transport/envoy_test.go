package transport_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/infermesh/infermesh/transport"
)

func response(status int, header http.Header, body string) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{
		StatusCode:    status,
		Header:        header,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
	}
}

func textPlain(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"text/plain"}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

const resetPrefix = "upstream connect error or disconnect/reset before headers. "

func TestParseEnvoy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   transport.Envoy
	}{
		{
			name: "overflow with header", status: 503,
			header: textPlain("X-Envoy-Overloaded", "true"),
			body:   resetPrefix + "reset reason: overflow",
			want: transport.Envoy{LocalReply: resetPrefix + "reset reason: overflow", Overloaded: true, Reset: true,
				ResetReason: "overflow"},
		},
		{
			name: "overloaded header alone", status: 503, header: http.Header{"X-Envoy-Overloaded": {"true"}},
			want: transport.Envoy{Overloaded: true},
		},
		{
			name: "overload manager", status: 503, header: textPlain(), body: "envoy overloaded",
			want: transport.Envoy{LocalReply: "envoy overloaded", Overloaded: true},
		},
		{
			name: "overload manager reset", status: 503, header: textPlain(),
			body: resetPrefix + "reset reason: overload manager reset",
			want: transport.Envoy{LocalReply: resetPrefix + "reset reason: overload manager reset", Overloaded: true,
				Reset: true, ResetReason: "overload manager reset"},
		},
		{
			name: "no healthy upstream", status: 503, header: textPlain(), body: "no healthy upstream",
			want: transport.Envoy{LocalReply: "no healthy upstream", NoHealthyUpstream: true},
		},
		{
			name: "no healthy upstream with charset", status: 503,
			header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, body: "no healthy upstream\n",
			want: transport.Envoy{LocalReply: "no healthy upstream", NoHealthyUpstream: true},
		},
		{
			name: "connection failure", status: 503, header: textPlain(),
			body: resetPrefix + "reset reason: connection failure",
			want: transport.Envoy{LocalReply: resetPrefix + "reset reason: connection failure", ConnectFailure: true,
				Reset: true, ResetReason: "connection failure"},
		},
		{
			name: "remote connection failure with transport reason", status: 503, header: textPlain(),
			body: resetPrefix + "reset reason: remote connection failure, transport failure reason: delayed connect error: 111",
			want: transport.Envoy{
				LocalReply:     resetPrefix + "reset reason: remote connection failure, transport failure reason: delayed connect error: 111",
				ConnectFailure: true, Reset: true, ResetReason: "remote connection failure",
				TransportFailureReason: "delayed connect error: 111"},
		},
		{
			name: "retried local connection failure", status: 503, header: textPlain(),
			body: resetPrefix + "retried and the latest reset reason: local connection failure",
			want: transport.Envoy{LocalReply: resetPrefix + "retried and the latest reset reason: local connection failure",
				ConnectFailure: true, Reset: true, Retried: true, ResetReason: "local connection failure"},
		},
		{
			name: "connection timeout", status: 503, header: textPlain(),
			body: resetPrefix + "reset reason: connection timeout",
			want: transport.Envoy{LocalReply: resetPrefix + "reset reason: connection timeout", ConnectFailure: true,
				Reset: true, ResetReason: "connection timeout"},
		},
		{
			name: "connection termination", status: 503, header: textPlain(),
			body: resetPrefix + "reset reason: connection termination",
			want: transport.Envoy{LocalReply: resetPrefix + "reset reason: connection termination", Reset: true,
				ResetReason: "connection termination"},
		},
		{
			name: "remote reset", status: 503, header: textPlain(),
			body: resetPrefix + "reset reason: remote reset",
			want: transport.Envoy{LocalReply: resetPrefix + "reset reason: remote reset", Reset: true, ResetReason: "remote reset"},
		},
		{
			name: "local reset", status: 503, header: textPlain(),
			body: resetPrefix + "reset reason: local reset",
			want: transport.Envoy{LocalReply: resetPrefix + "reset reason: local reset", Reset: true, ResetReason: "local reset"},
		},
		{
			name: "remote refused stream reset", status: 503, header: textPlain(),
			body: resetPrefix + "reset reason: remote refused stream reset",
			want: transport.Envoy{LocalReply: resetPrefix + "reset reason: remote refused stream reset", Reset: true,
				ResetReason: "remote refused stream reset"},
		},
		{
			name: "upstream request timeout", status: 504, header: textPlain(), body: "upstream request timeout",
			want: transport.Envoy{LocalReply: "upstream request timeout", UpstreamTimeout: true},
		},
		{
			name: "max stream duration", status: 504, header: textPlain(), body: "upstream max stream duration reached",
			want: transport.Envoy{LocalReply: "upstream max stream duration reached", UpstreamTimeout: true},
		},
		{
			name: "headers", status: 200,
			header: http.Header{"X-Envoy-Upstream-Service-Time": {"123"}, "X-Envoy-Attempt-Count": {"3"}},
			want:   transport.Envoy{AttemptCount: 3, Retried: true, UpstreamServiceTime: 123 * time.Millisecond},
		},
		{
			name: "first attempt", status: 200, header: http.Header{"X-Envoy-Attempt-Count": {"1"}},
			want: transport.Envoy{AttemptCount: 1},
		},
		{
			name: "rate limited", status: 429, header: http.Header{"X-Envoy-Ratelimited": {"true"}},
			want: transport.Envoy{RateLimited: true},
		},
		{
			name: "garbage headers", status: 200,
			header: http.Header{"X-Envoy-Upstream-Service-Time": {"-5"}, "X-Envoy-Attempt-Count": {"many"},
				"X-Envoy-Overloaded": {"false"}},
			want: transport.Envoy{},
		},
		{
			name: "huge header values", status: 200,
			header: http.Header{"X-Envoy-Upstream-Service-Time": {"99999999999999999999"}, "X-Envoy-Attempt-Count": {"+2"}},
			want:   transport.Envoy{},
		},
		// Shapes that must not be read as local replies.
		{name: "503 json", status: 503, header: http.Header{"Content-Type": {"application/json"}}, body: "no healthy upstream"},
		{name: "503 no content type", status: 503, body: "no healthy upstream"},
		{name: "500 text", status: 500, header: textPlain(), body: "no healthy upstream"},
		{name: "timeout body on 503", status: 503, header: textPlain(), body: "upstream request timeout"},
		{name: "no healthy on 504", status: 504, header: textPlain(), body: "no healthy upstream"},
		{name: "app text", status: 503, header: textPlain(), body: "service is warming up"},
		{name: "prefix inside text", status: 503, header: textPlain(), body: "error: no healthy upstream here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := response(tt.status, tt.header, tt.body)
			got := transport.ParseEnvoy(resp)
			if got != tt.want {
				t.Errorf("ParseEnvoy =\n %+v\nwant\n %+v", got, tt.want)
			}
			if got.Any() != (tt.want != transport.Envoy{}) {
				t.Errorf("Any() = %v", got.Any())
			}
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != tt.body {
				t.Errorf("body after ParseEnvoy = %q, %v; want %q", rest, err, tt.body)
			}
		})
	}
}

// TestParseEnvoyRestoresLongBody: a long text/plain 503 is peeked at, not consumed.
func TestParseEnvoyRestoresLongBody(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10000)
	closed := false
	resp := response(503, textPlain(), "")
	resp.ContentLength = -1
	resp.Body = closeFunc{Reader: iotest.OneByteReader(strings.NewReader(long)), close: func() { closed = true }}
	if e := transport.ParseEnvoy(resp); e.Any() {
		t.Errorf("ParseEnvoy = %+v, want nothing", e)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || string(got) != long {
		t.Fatalf("read back %d bytes, %v; want %d", len(got), err, len(long))
	}
	resp.Body.Close()
	if !closed {
		t.Error("closing the restored body did not close the original")
	}
}

// TestParseEnvoyReadError: a read error during the peek is handed to the caller after the
// peeked bytes.
func TestParseEnvoyReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	resp := response(503, textPlain(), "")
	resp.Body = io.NopCloser(io.MultiReader(strings.NewReader("no healthy"), iotest.ErrReader(boom)))
	transport.ParseEnvoy(resp)
	got, err := io.ReadAll(resp.Body)
	if string(got) != "no healthy" || !errors.Is(err, boom) {
		t.Errorf("read back %q, %v; want the prefix then boom", got, err)
	}
}

func TestParseEnvoyNil(t *testing.T) {
	t.Parallel()
	if e := transport.ParseEnvoy(nil); e.Any() {
		t.Error("ParseEnvoy(nil) found signals")
	}
	resp := &http.Response{StatusCode: 503, Header: textPlain(), Body: http.NoBody}
	if e := transport.ParseEnvoy(resp); e.Any() {
		t.Error("ParseEnvoy with NoBody found signals")
	}
}

type closeFunc struct {
	io.Reader
	close func()
}

func (c closeFunc) Close() error { c.close(); return nil }

func FuzzParseEnvoy(f *testing.F) {
	f.Add(503, "text/plain", "true", "1", "12", resetPrefix+"reset reason: overflow")
	f.Add(503, "text/plain", "", "", "", "no healthy upstream")
	f.Add(504, "text/plain; charset=utf-8", "", "2", "", "upstream request timeout")
	f.Add(503, "text/plain", "", "3", "5", resetPrefix+"retried and the latest reset reason: remote connection failure, transport failure reason: delayed connect error: 111")
	f.Add(503, "text/plain", "", "", "", resetPrefix+"reset reason: ")
	f.Add(503, "text/plain", "", "", "", resetPrefix)
	f.Add(200, "application/json", "", "x", "-1", "{}")
	f.Add(503, "text/plain;;", "TRUE", "999999999", "999999999", strings.Repeat("a", 300))
	f.Fuzz(func(t *testing.T, status int, ct, overloaded, attempts, svcTime, body string) {
		h := http.Header{}
		h.Set("Content-Type", ct)
		h.Set("X-Envoy-Overloaded", overloaded)
		h.Set("X-Envoy-Attempt-Count", attempts)
		h.Set("X-Envoy-Upstream-Service-Time", svcTime)
		resp := response(status, h, body)
		if len(body)%2 == 1 {
			resp.ContentLength = -1
		}
		e := transport.ParseEnvoy(resp)
		rest, err := io.ReadAll(resp.Body)
		if err != nil || string(rest) != body {
			t.Fatalf("body not restored: %q, %v", rest, err)
		}
		if len(e.LocalReply) > transport.EnvoyPeekBytes {
			t.Fatalf("LocalReply longer than the peek: %d", len(e.LocalReply))
		}
		if e.AttemptCount < 0 || e.UpstreamServiceTime < 0 {
			t.Fatalf("negative values: %+v", e)
		}
		if e.ConnectFailure && !e.Reset {
			t.Fatalf("ConnectFailure without Reset: %+v", e)
		}
		if (e.NoHealthyUpstream || e.UpstreamTimeout || e.Reset) && e.LocalReply == "" {
			t.Fatalf("body signal without LocalReply: %+v", e)
		}
	})
}
