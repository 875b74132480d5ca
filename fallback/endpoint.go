package fallback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/tracing"
	"github.com/infermesh/infermesh/transport"
)

// EndpointConfig describes another OpenAI-compatible server, such as a local Ollama
// ("http://127.0.0.1:11434/v1"), llama.cpp's server ("http://127.0.0.1:8080/v1") or
// vLLM ("http://127.0.0.1:8000/v1").
type EndpointConfig struct {
	// Name identifies the target; required.
	Name string
	// BaseURL is the server's API base including its version prefix, in the same form
	// as go-openai's ClientConfig.BaseURL; required, http or https.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>". Empty sends no Authorization
	// header at all: the primary's key is never forwarded to a fallback.
	APIKey string
	// Model replaces the request's JSON "model" field. Empty keeps the caller's model.
	Model string
	// Transport sends the requests. Nil means a pooled transport from package
	// transport with its defaults.
	Transport http.RoundTripper
	// ForwardHeaders names caller headers the endpoint also receives, such as a session
	// header ("x-session-id"). By default it receives only Content-Type, Accept, the
	// trace context, and OpenAI-Organization and OpenAI-Project when it is on the
	// primary's host. Credential headers are never forwarded, named here or not: the
	// endpoint authenticates with APIKey.
	ForwardHeaders []string
}

// Endpoint is a [Target] that forwards the call to another OpenAI-compatible server.
type Endpoint struct {
	name    string
	base    *url.URL
	apiKey  string
	model   string
	rt      http.RoundTripper
	forward []string // canonical header names forwarded besides the defaults
}

// NewEndpoint validates cfg and returns the target.
func NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	if cfg.Name == "" {
		return nil, errors.New("fallback: EndpointConfig.Name is empty")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fallback: EndpointConfig.BaseURL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	rt := cfg.Transport
	if rt == nil {
		t, err := transport.New(transport.Config{})
		if err != nil {
			return nil, err
		}
		rt = t
	}
	e := &Endpoint{name: cfg.Name, base: u, apiKey: cfg.APIKey, model: cfg.Model, rt: rt}
	for i, h := range cfg.ForwardHeaders {
		if h == "" || strings.ContainsAny(h, " \t\r\n:") {
			return nil, fmt.Errorf("fallback: EndpointConfig.ForwardHeaders[%d] %q is not a header name", i, h)
		}
		e.forward = append(e.forward, http.CanonicalHeaderKey(h))
	}
	return e, nil
}

// Name returns the target's name.
func (e *Endpoint) Name() string { return e.name }

// forwarded are the caller headers every endpoint receives: what the body is and what
// the caller accepts. The trace context is injected afresh for the fallback's span.
var forwarded = []string{"Content-Type", "Accept"}

// sameHostOnly are forwarded only to an endpoint on the primary's host: they scope the
// caller's account there and mean nothing (or the wrong thing) anywhere else.
var sameHostOnly = []string{"Openai-Organization", "Openai-Project"}

// Serve forwards r to the endpoint with its base URL, auth header and model, and only the
// caller headers it needs (an allowlist; see EndpointConfig.ForwardHeaders).
func (e *Endpoint) Serve(ctx context.Context, r *Request) (*http.Response, error) {
	body := r.Body
	if e.model != "" && len(body) > 0 {
		var err error
		if body, err = SetModel(body, e.model); err != nil {
			return nil, err
		}
	}
	u := *e.base
	u.Path += r.Operation
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, r.method(), u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("fallback: build request for %q: %w", e.name, err)
	}
	e.forwardHeaders(r, req.Header)
	if e.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+e.apiKey)
	}
	if len(body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	// The fallback's span (when the call is traced) continues the caller's trace.
	tracing.CallFromContext(ctx).InjectHeader(ctx, req.Header)
	return e.rt.RoundTrip(req)
}

// forwardHeaders copies the allowed caller headers of r into h.
func (e *Endpoint) forwardHeaders(r *Request, h http.Header) {
	if r.HTTP == nil {
		return
	}
	creds := r.credentials()
	names := append(append([]string(nil), forwarded...), e.forward...)
	if r.HTTP.URL != nil && r.HTTP.URL.Host == e.base.Host {
		names = append(names, sameHostOnly...)
	}
	for _, name := range names {
		if vs := r.HTTP.Header.Values(name); len(vs) > 0 && !creds.Has(name) {
			h[http.CanonicalHeaderKey(name)] = append([]string(nil), vs...)
		}
	}
}

// CloseIdleConnections closes the idle connections of the endpoint's transport.
func (e *Endpoint) CloseIdleConnections() {
	if c, ok := e.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (r *Request) method() string {
	if r.HTTP != nil && r.HTTP.Method != "" {
		return r.HTTP.Method
	}
	return http.MethodPost
}

// SetModel returns body with its top-level JSON "model" field set to model. Every other
// field is kept as it was, byte for byte and in its place.
func SetModel(body []byte, model string) ([]byte, error) {
	b, err := llmwire.WithModel(body, model)
	if err != nil {
		return nil, fmt.Errorf("fallback: request body is not a JSON object: %w", err)
	}
	return b, nil
}
