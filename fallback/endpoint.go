package fallback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

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
}

// Endpoint is a [Target] that forwards the call to another OpenAI-compatible server.
type Endpoint struct {
	name   string
	base   *url.URL
	apiKey string
	model  string
	rt     http.RoundTripper
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
	return &Endpoint{name: cfg.Name, base: u, apiKey: cfg.APIKey, model: cfg.Model, rt: rt}, nil
}

// Name returns the target's name.
func (e *Endpoint) Name() string { return e.name }

// droppedHeaders are caller headers that belong to the primary and must not reach a
// fallback server: credentials, the primary's account scoping and hop-specific fields.
var droppedHeaders = []string{
	"Authorization", "Api-Key", "Openai-Organization", "Openai-Project",
	"Content-Length", "Host", "Cookie", "Proxy-Authorization",
}

// Serve forwards r to the endpoint with its base URL, auth header and model.
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
	if r.HTTP != nil {
		for k, vs := range r.HTTP.Header {
			req.Header[k] = append([]string(nil), vs...)
		}
	}
	for _, h := range droppedHeaders {
		req.Header.Del(h)
	}
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

// SetModel returns body with its top-level JSON "model" field set to model. Other
// fields are kept as they were, byte for byte; their order may change.
func SetModel(body []byte, model string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("fallback: request body is not a JSON object: %w", err)
	}
	v, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	m["model"] = v
	return json.Marshal(m)
}
