package transport_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/transport"
)

func TestClassifyResponse(t *testing.T) {
	t.Parallel()
	type v = breaker.Verdict
	fail := func(retry bool, c breaker.Class) v {
		return v{Outcome: breaker.OutcomeFailure, Retryable: retry, Class: c}
	}
	excl := func(c breaker.Class) v { return v{Outcome: breaker.OutcomeExcluded, Class: c} }
	with := func(x v, f func(*v)) v { f(&x); return x }
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   v
	}{
		{"200", 200, nil, "", v{}},
		{"204", 204, nil, "", v{}},
		{"304", 304, nil, "", v{}},
		{"200 mesh retried", 200, http.Header{"X-Envoy-Attempt-Count": {"2"}}, "", v{Signals: breaker.Signals{MeshRetried: true}}},
		{"400", 400, nil, `{"error":{"code":"context_length_exceeded"}}`, excl(breaker.ClassClientError)},
		{"422", 422, nil, "", excl(breaker.ClassClientError)},
		{"404", 404, nil, "", excl(breaker.ClassClientError)},
		{"409", 409, nil, "", excl(breaker.ClassClientError)},
		{"413", 413, nil, "", excl(breaker.ClassClientError)},
		{"401", 401, nil, "", excl(breaker.ClassAuth)},
		{"403", 403, textPlain(), "RBAC: access denied", excl(breaker.ClassAuth)},
		{"408", 408, nil, "", fail(true, breaker.ClassTimeout)},
		{"429", 429, nil, "", fail(true, breaker.ClassRateLimited)},
		{"429 retry-after", 429, http.Header{"Retry-After": {"3"}}, "",
			with(fail(true, breaker.ClassRateLimited), func(x *v) { x.RetryAfter = 3 * time.Second })},
		{"429 retry-after-ms", 429, http.Header{"Retry-After": {"3"}, "Retry-After-Ms": {"150"}}, "",
			with(fail(true, breaker.ClassRateLimited), func(x *v) { x.RetryAfter = 150 * time.Millisecond })},
		{"500", 500, nil, "", fail(true, breaker.ClassServerError)},
		{"501", 501, nil, "", fail(false, breaker.ClassServerError)},
		{"502", 502, nil, "", fail(true, breaker.ClassServerError)},
		{"503 plain", 503, nil, "", fail(true, breaker.ClassUnavailable)},
		{"503 app text", 503, textPlain(), "warming up", fail(true, breaker.ClassUnavailable)},
		{"503 retry-after", 503, http.Header{"Retry-After": {"20"}}, "",
			with(fail(true, breaker.ClassUnavailable), func(x *v) { x.RetryAfter = 20 * time.Second })},
		{"503 overflow", 503, textPlain("X-Envoy-Overloaded", "true"), resetPrefix + "reset reason: overflow",
			with(fail(true, breaker.ClassOverloaded), func(x *v) { x.Signals.Overloaded = true })},
		{"503 overloaded header", 503, http.Header{"X-Envoy-Overloaded": {"true"}}, "",
			with(fail(true, breaker.ClassOverloaded), func(x *v) { x.Signals.Overloaded = true })},
		{"503 no healthy upstream", 503, textPlain(), "no healthy upstream",
			with(fail(false, breaker.ClassUnavailable), func(x *v) { x.Signals.NoHealthyUpstream = true })},
		{"503 connection failure", 503, textPlain(), resetPrefix + "reset reason: connection failure",
			fail(true, breaker.ClassConnection)},
		{"503 remote reset", 503, textPlain(), resetPrefix + "reset reason: remote reset", fail(true, breaker.ClassConnection)},
		{"503 connection termination retried", 503, textPlain("X-Envoy-Attempt-Count", "3"),
			resetPrefix + "reset reason: connection termination",
			with(fail(true, breaker.ClassConnection), func(x *v) { x.Signals.MeshRetried = true })},
		{"503 retried body", 503, textPlain(), resetPrefix + "retried and the latest reset reason: remote connection failure",
			with(fail(true, breaker.ClassConnection), func(x *v) { x.Signals.MeshRetried = true })},
		{"504", 504, nil, "", fail(true, breaker.ClassTimeout)},
		{"504 upstream request timeout", 504, textPlain(), "upstream request timeout", fail(true, breaker.ClassTimeout)},
		{"505", 505, nil, "", fail(false, breaker.ClassServerError)},
		{"529", 529, nil, "", fail(true, breaker.ClassOverloaded)},
		{"599", 599, nil, "", fail(true, breaker.ClassServerError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := transport.ClassifyResponse(response(tt.status, tt.header, tt.body))
			if got != tt.want {
				t.Errorf("ClassifyResponse = %+v, want %+v", got, tt.want)
			}
			// The same verdict through a StatusError and the classifiers.
			var err error = transport.NewStatusError(response(tt.status, tt.header, tt.body))
			err = fmt.Errorf("calling upstream: %w", err)
			if got := transport.Classify(err); got != tt.want && tt.status >= 400 {
				t.Errorf("Classify(StatusError) = %+v, want %+v", got, tt.want)
			}
			if got := breaker.DefaultClassifier(err); got != tt.want && tt.status >= 400 {
				t.Errorf("breaker.DefaultClassifier(StatusError) = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStatusErrorMessage(t *testing.T) {
	t.Parallel()
	const secret = "sk-test-SECRET"
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/v1/chat?api-key="+secret, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	tests := []struct {
		resp *http.Response
		want string
	}{
		{response(503, textPlain(), "no healthy upstream"), `transport: HTTP 503 Service Unavailable: envoy: "no healthy upstream"`},
		{response(503, http.Header{"X-Envoy-Overloaded": {"true"}}, ""), "transport: HTTP 503 Service Unavailable: envoy overloaded"},
		{response(429, http.Header{"Retry-After": {"2"}}, `{"error":"`+secret+`"}`), "transport: HTTP 429 Too Many Requests (retry after 2s)"},
		{response(504, textPlain("X-Envoy-Attempt-Count", "2"), "upstream request timeout"),
			`transport: HTTP 504 Gateway Timeout: envoy: "upstream request timeout" (mesh attempts: 2)`},
		{response(599, nil, ""), "transport: HTTP 599"},
	}
	for _, tt := range tests {
		tt.resp.Request = req
		err := transport.NewStatusError(tt.resp)
		if got := err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("message leaks a secret: %q", err)
		}
	}
}

func TestClassifyErrors(t *testing.T) {
	t.Parallel()
	fail := func(retry bool, c breaker.Class) breaker.Verdict {
		return breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: retry, Class: c}
	}
	refused := dialClosedPort(t)
	headerTimeout := responseHeaderTimeout(t)
	unknownCA := untrustedTLS(t)
	tests := []struct {
		name string
		err  error
		want breaker.Verdict
	}{
		{"nil", nil, breaker.Verdict{}},
		{"caller canceled", &url.Error{Op: "Post", URL: "u", Err: context.Canceled}, breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassCanceled}},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), fail(true, breaker.ClassTimeout)},
		{"connection refused", refused, fail(true, breaker.ClassConnection)},
		{"response header timeout", headerTimeout, fail(true, breaker.ClassTimeout)},
		{"unknown CA", unknownCA, fail(false, breaker.ClassConnection)},
		{"hostname mismatch", &url.Error{Err: x509.HostnameError{Host: "x"}}, fail(false, breaker.ClassConnection)},
		{"no such host", &url.Error{Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}}, fail(false, breaker.ClassConnection)},
		{"dns temporary", &net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}, fail(true, breaker.ClassConnection)},
		{"eof before response", &url.Error{Op: "Post", URL: "u", Err: io.EOF}, fail(true, breaker.ClassConnection)},
		{"unexpected eof", io.ErrUnexpectedEOF, fail(true, breaker.ClassConnection)},
		{"closed", net.ErrClosed, fail(true, breaker.ClassConnection)},
		{"unknown", errors.New("something else"), fail(true, breaker.ClassUnknown)}, // breaker.DefaultClassifier's rule, one for the module
		{"body error", &transport.BodyError{Err: io.ErrUnexpectedEOF}, fail(false, breaker.ClassConnection)},
		{"body error unknown", &transport.BodyError{Err: errors.New("stream reset")}, fail(false, breaker.ClassConnection)},
		{"body error timeout", fmt.Errorf("reading: %w", &transport.BodyError{Err: context.DeadlineExceeded}), fail(false, breaker.ClassTimeout)},
		{"body error canceled", &transport.BodyError{Err: context.Canceled}, breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassCanceled}},
		{"body error bomb", &transport.BodyError{Err: &transport.DecompressionLimitError{Limit: 1}}, fail(false, breaker.ClassServerError)},
		{"bomb", &transport.DecompressionLimitError{Limit: 1}, fail(false, breaker.ClassServerError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := transport.Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %+v, want %+v", tt.err, got, tt.want)
			}
		})
	}
}

// dialClosedPort returns the error of a request to a loopback port nobody listens on.
func dialClosedPort(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr, _ := transport.New(transport.Config{})
	defer tr.CloseIdleConnections()
	_, err = (&http.Client{Transport: tr}).Get("http://" + addr)
	if err == nil {
		t.Fatal("request to a closed port succeeded")
	}
	return err
}

func responseHeaderTimeout(t *testing.T) error {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	tr, _ := transport.New(transport.Config{})
	tr.ResponseHeaderTimeout = 50 * time.Millisecond
	defer tr.CloseIdleConnections()
	_, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err == nil {
		t.Fatal("no timeout")
	}
	return err
}

func untrustedTLS(t *testing.T) error {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = discardLogger()
	srv.StartTLS()
	defer srv.Close()
	tr, _ := transport.New(transport.Config{})
	defer tr.CloseIdleConnections()
	_, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err == nil {
		t.Fatal("untrusted certificate accepted")
	}
	return err
}
