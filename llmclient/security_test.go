package llmclient_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/llmclient"
)

// hosts routes requests by host name to in-process handlers, so redirects between
// hosts stay inside the test.
type hosts map[string]http.Handler

func (h hosts) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	h[r.URL.Hostname()].ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// TestRedirectDoesNotCarryAuthorization: a redirect to another host loses the
// Authorization header (and the key with it); one to the same host keeps it.
func TestRedirectDoesNotCarryAuthorization(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Host+r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	})
	rt := hosts{
		"api.invalid": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			target := "http://elsewhere.invalid/v1/chat/completions"
			if r.URL.Query().Get("same") == "1" {
				target = "http://api.invalid/v2/chat/completions"
			}
			if r.URL.Path == "/v2/chat/completions" {
				answer(w, r)
				return
			}
			http.Redirect(w, r, target, http.StatusTemporaryRedirect)
		}),
		"elsewhere.invalid": answer,
	}
	hc, err := llmclient.NewHTTPClient(llmclient.Config{Base: rt})
	if err != nil {
		t.Fatal(err)
	}
	for _, same := range []bool{false, true} {
		cfg := openai.DefaultConfig(secretKey)
		cfg.BaseURL = "http://api.invalid/v1"
		cfg.HTTPClient = hc
		if same {
			cfg = withQuery(cfg, "same=1")
		}
		client := openai.NewClientWithConfig(cfg)
		req := openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}
		if _, err := client.CreateChatCompletion(context.Background(), req); err != nil {
			t.Fatalf("same=%v: %v", same, err)
		}
	}
	if len(seen) != 2 {
		t.Fatalf("answered %v, want one cross-host and one same-host redirect", seen)
	}
	if got := seen["elsewhere.invalid/v1/chat/completions"]; got != "" {
		t.Errorf("a cross-host redirect carried Authorization %q", got)
	}
	if got := seen["api.invalid/v2/chat/completions"]; got != "Bearer "+secretKey {
		t.Errorf("a same-host redirect lost Authorization (got %q)", got)
	}
}

// withQuery makes every request of cfg carry query q.
func withQuery(cfg openai.ClientConfig, q string) openai.ClientConfig {
	inner := cfg.HTTPClient
	cfg.HTTPClient = doerFunc(func(r *http.Request) (*http.Response, error) {
		r.URL.RawQuery = q
		return inner.Do(r)
	})
	return cfg
}

type doerFunc func(*http.Request) (*http.Response, error)

func (f doerFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }
