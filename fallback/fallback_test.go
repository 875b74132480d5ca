package fallback_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/internal/redistest"
)

func TestMain(m *testing.M) {
	redistest.QuietLogs()
	goleak.VerifyTestMain(m)
}

func chatRequest(t *testing.T, stream, usage bool) *fallback.Request {
	t.Helper()
	body := `{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]}]}`
	hr, err := http.NewRequest(http.MethodPost, "https://api.example/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Authorization", "Bearer sk-primary-secret")
	hr.Header.Set("OpenAI-Organization", "org-primary")
	hr.Header.Set("X-Request-Id", "req-1")
	return &fallback.Request{HTTP: hr, Body: []byte(body), Operation: "/chat/completions", Model: "gpt-4o", Stream: stream, IncludeUsage: usage}
}

func TestNewValidates(t *testing.T) {
	for name, cfg := range map[string]fallback.Config{
		"nil target":   {Targets: []fallback.Target{nil}},
		"empty name":   {Targets: []fallback.Target{fallback.Static("", "x")}},
		"duplicate":    {Targets: []fallback.Target{fallback.Static("a", "x"), fallback.Static("a", "y")}},
		"context name": {ContextLength: fallback.Static("", "x")},
	} {
		if _, err := fallback.New(cfg); err == nil {
			t.Errorf("%s: New accepted an invalid config", name)
		}
	}
	_, err := fallback.New(fallback.Config{Targets: []fallback.Target{fallback.Static("a", "x"), fallback.Static("a", "y")}})
	if err == nil || !strings.Contains(err.Error(), `Targets[1]`) || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("error %v does not name the field and value", err)
	}
}

func TestTriggered(t *testing.T) {
	static := fallback.Static("static", "busy")
	chain, _ := fallback.New(fallback.Config{Targets: []fallback.Target{static}})
	ctxChain, _ := fallback.New(fallback.Config{Targets: []fallback.Target{static}, ContextLength: fallback.Static("big", "x")})
	permissive, _ := fallback.New(fallback.Config{Targets: []fallback.Target{static}, OnClientError: true, OnAuthError: true})
	empty, _ := fallback.New(fallback.Config{})
	boom := errors.New("boom")
	cases := []struct {
		name  string
		chain *fallback.Chain
		err   error
		v     breaker.Verdict
		want  bool
	}{
		{"breaker open", chain, breaker.ErrOpen, breaker.Verdict{}, true},
		{"deadline too short", chain, breaker.ErrDeadlineTooShort, breaker.Verdict{}, true},
		{"no healthy upstream", chain, boom, breaker.Verdict{Outcome: breaker.OutcomeFailure, Signals: breaker.Signals{NoHealthyUpstream: true}}, true},
		{"retries exhausted on retryable", chain, boom, breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassServerError}, true},
		{"first token timeout", chain, boom, breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassTimeout}, true},
		{"out of quota", chain, boom, breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassRateLimited}, true},
		{"client error", chain, boom, breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassClientError}, false},
		{"auth error", chain, boom, breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassAuth}, false},
		{"client error when configured", permissive, boom, breaker.Verdict{Class: breaker.ClassClientError}, true},
		{"auth error when configured", permissive, boom, breaker.Verdict{Class: breaker.ClassAuth}, true},
		{"context length without target", chain, boom, breaker.Verdict{Class: breaker.ClassContextLength}, false},
		{"context length with target", ctxChain, boom, breaker.Verdict{Class: breaker.ClassContextLength}, true},
		{"caller cancelled", chain, context.Canceled, breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassCanceled}, false},
		{"empty chain", empty, breaker.ErrOpen, breaker.Verdict{}, false},
		{"no error", chain, nil, breaker.Verdict{}, false},
	}
	for _, c := range cases {
		if got := c.chain.Triggered(c.err, c.v); got != c.want {
			t.Errorf("%s: Triggered = %v, want %v", c.name, got, c.want)
		}
	}
}

func decodeChat(t *testing.T, resp *http.Response) (content string, usage map[string]int) {
	t.Helper()
	defer resp.Body.Close()
	var v struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Role, Content string
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage map[string]int `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.Object != "chat.completion" || len(v.Choices) != 1 || v.Choices[0].Message.Role != "assistant" || v.Choices[0].FinishReason != "stop" {
		t.Fatalf("not a chat completion: %+v", v)
	}
	return v.Choices[0].Message.Content, v.Usage
}

func TestChainOrderAndMarking(t *testing.T) {
	failing := fallback.Func("broken", func(context.Context, *fallback.Request) (fallback.Reply, error) {
		return fallback.Reply{}, errors.New("local model down")
	})
	var seen []fallback.Message
	echo := fallback.Func("echo", func(_ context.Context, r *fallback.Request) (fallback.Reply, error) {
		msgs, err := r.Messages()
		seen = msgs
		return fallback.Reply{Content: "echo: " + msgs[len(msgs)-1].Content, InputTokens: 3, OutputTokens: 2}, err
	})
	chain, err := fallback.New(fallback.Config{Targets: []fallback.Target{failing, echo, fallback.Static("static", "never")}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := chain.Serve(context.Background(), chatRequest(t, false, false), breaker.Verdict{})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get(fallback.HeaderFallback); got != "echo" {
		t.Errorf("%s = %q, want echo", fallback.HeaderFallback, got)
	}
	content, usage := decodeChat(t, resp)
	if content != "echo: hi" {
		t.Errorf("content %q", content)
	}
	if usage["prompt_tokens"] != 3 || usage["completion_tokens"] != 2 || usage["total_tokens"] != 5 {
		t.Errorf("usage %v", usage)
	}
	if len(seen) != 2 || seen[0].Content != "be brief" || seen[1].Content != "hi" {
		t.Errorf("messages %+v", seen)
	}
}

func TestChainAllFail(t *testing.T) {
	a := fallback.Func("a", func(context.Context, *fallback.Request) (fallback.Reply, error) {
		return fallback.Reply{}, errors.New("a down")
	})
	chain, _ := fallback.New(fallback.Config{Targets: []fallback.Target{a, fallback.Static("b", "x")}})
	req := chatRequest(t, false, false)
	req.Operation = "/embeddings"
	_, err := chain.Serve(context.Background(), req, breaker.Verdict{})
	if !errors.Is(err, fallback.ErrNoTarget) || !errors.Is(err, fallback.ErrUnsupported) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("err = %v; want ErrNoTarget wrapping each target's error", err)
	}
}

func TestContextLengthGoesToItsOwnTarget(t *testing.T) {
	chain, _ := fallback.New(fallback.Config{
		Targets:       []fallback.Target{fallback.Static("small", "small")},
		ContextLength: fallback.Static("large-context", "large"),
	})
	resp, err := chain.Serve(context.Background(), chatRequest(t, false, false), breaker.Verdict{Class: breaker.ClassContextLength})
	if err != nil {
		t.Fatal(err)
	}
	if content, _ := decodeChat(t, resp); content != "large" || resp.Header.Get(fallback.HeaderFallback) != "large-context" {
		t.Errorf("served %q by %q", content, resp.Header.Get(fallback.HeaderFallback))
	}
}

func TestStaticStreamIsValidSSE(t *testing.T) {
	chain, _ := fallback.New(fallback.Config{Targets: []fallback.Target{fallback.Func("f", func(context.Context, *fallback.Request) (fallback.Reply, error) {
		return fallback.Reply{Content: "hello", InputTokens: 4, OutputTokens: 1}, nil
	})}})
	resp, err := chain.Serve(context.Background(), chatRequest(t, true, true), breaker.Verdict{})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	raw, _ := io.ReadAll(resp.Body)
	events := strings.Split(strings.TrimSpace(string(raw)), "\n\n")
	if len(events) != 5 || events[4] != "data: [DONE]" {
		t.Fatalf("events: %q", events)
	}
	var content strings.Builder
	var usageSeen bool
	for _, ev := range events[:4] {
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				TotalTokens int `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(ev, "data: ")), &c); err != nil {
			t.Fatalf("event %q: %v", ev, err)
		}
		if c.Object != "chat.completion.chunk" {
			t.Errorf("object %q", c.Object)
		}
		for _, ch := range c.Choices {
			content.WriteString(ch.Delta.Content)
		}
		if c.Usage != nil {
			usageSeen = len(c.Choices) == 0 && c.Usage.TotalTokens == 5
		}
	}
	if content.String() != "hello" || !usageSeen {
		t.Errorf("content %q, usage-only chunk seen %v", content.String(), usageSeen)
	}
}

func TestEndpointRewritesURLAuthAndModel(t *testing.T) {
	type seen struct {
		path, auth, org, reqID, model string
		messages                      int
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Model    string            `json:"model"`
			Messages []json.RawMessage `json:"messages"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		got <- seen{r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("OpenAI-Organization"), r.Header.Get("X-Request-Id"), body.Model, len(body.Messages)}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"local"},"finish_reason":"stop"}]}`)
	}))
	defer srv.Close()
	// X-Request-Id reaches the endpoint only because it is named: headers are forwarded
	// by an allowlist.
	ep, err := fallback.NewEndpoint(fallback.EndpointConfig{Name: "ollama", BaseURL: srv.URL + "/v1/", APIKey: "ollama-key", Model: "llama3.2",
		Transport: srv.Client().Transport, ForwardHeaders: []string{"x-request-id"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.CloseIdleConnections()
	chain, _ := fallback.New(fallback.Config{Targets: []fallback.Target{ep}})
	resp, err := chain.Serve(context.Background(), chatRequest(t, false, false), breaker.Verdict{})
	if err != nil {
		t.Fatal(err)
	}
	content, _ := decodeChat(t, resp)
	s := <-got
	want := seen{"/v1/chat/completions", "Bearer ollama-key", "", "req-1", "llama3.2", 2}
	if s != want || content != "local" || resp.Header.Get(fallback.HeaderFallback) != "ollama" {
		t.Errorf("upstream saw %+v (want %+v), content %q", s, want, content)
	}
}

func TestEndpointFailureMovesOn(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "loading model", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ep, _ := fallback.NewEndpoint(fallback.EndpointConfig{Name: "vllm", BaseURL: srv.URL + "/v1", Transport: srv.Client().Transport})
	defer ep.CloseIdleConnections()
	chain, _ := fallback.New(fallback.Config{Targets: []fallback.Target{ep, fallback.Static("static", "later")}})
	resp, err := chain.Serve(context.Background(), chatRequest(t, false, false), breaker.Verdict{})
	if err != nil {
		t.Fatal(err)
	}
	if content, _ := decodeChat(t, resp); content != "later" {
		t.Errorf("content %q", content)
	}
}

func TestNewEndpointValidates(t *testing.T) {
	for _, cfg := range []fallback.EndpointConfig{
		{BaseURL: "http://127.0.0.1:11434/v1"},
		{Name: "x", BaseURL: "127.0.0.1:11434"},
		{Name: "x", BaseURL: "ftp://127.0.0.1/v1"},
	} {
		if _, err := fallback.NewEndpoint(cfg); err == nil {
			t.Errorf("NewEndpoint(%+v) accepted an invalid config", cfg)
		}
	}
}

func TestCacheServesLastGoodWithinTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cache, err := fallback.NewCache(fallback.CacheConfig{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		req := chatRequest(t, false, false)
		if _, err := cache.Serve(context.Background(), req); !errors.Is(err, fallback.ErrCacheMiss) {
			t.Fatalf("empty cache: err = %v", err)
		}
		good := `{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"cached answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`
		cache.Store(req, []byte(good))
		time.Sleep(30 * time.Second)

		// The same question, fields in another order and asked as a stream, still hits.
		streamed := chatRequest(t, true, true)
		streamed.Body = []byte(`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]}],"stream":true,"model":"gpt-4o"}`)
		resp, err := cache.Serve(context.Background(), streamed)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(raw), `"content":"cached answer"`) || !strings.HasSuffix(string(raw), "data: [DONE]\n\n") {
			t.Errorf("stream from cache: %s", raw)
		}
		if resp.Header.Get(fallback.HeaderDegraded) != "cache" || resp.Header.Get("Age") != "30" {
			t.Errorf("degraded marking: %v", resp.Header)
		}

		resp, err = cache.Serve(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if content, _ := decodeChat(t, resp); content != "cached answer" {
			t.Errorf("content %q", content)
		}

		time.Sleep(31 * time.Second)
		if _, err := cache.Serve(context.Background(), req); !errors.Is(err, fallback.ErrCacheMiss) {
			t.Errorf("after TTL: err = %v, want ErrCacheMiss", err)
		}
		if cache.Len() != 0 {
			t.Errorf("expired entry kept: Len = %d", cache.Len())
		}
	})
}

func TestCacheBounds(t *testing.T) {
	cache, err := fallback.NewCache(fallback.CacheConfig{MaxEntries: 2, MaxBytes: 100, MaxEntryBytes: 60})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(q string) *fallback.Request {
		return &fallback.Request{Operation: "/chat/completions", Body: []byte(`{"model":"m","messages":[{"role":"user","content":"` + q + `"}]}`)}
	}
	cache.Store(mk("a"), []byte(strings.Repeat("a", 40)))
	cache.Store(mk("b"), []byte(strings.Repeat("b", 40)))
	cache.Store(mk("c"), []byte(strings.Repeat("c", 40))) // evicts a (entries and bytes)
	cache.Store(mk("d"), []byte(strings.Repeat("d", 61))) // over MaxEntryBytes: not stored
	if cache.Len() != 2 {
		t.Fatalf("Len = %d, want 2", cache.Len())
	}
	if _, err := cache.Serve(context.Background(), mk("a")); !errors.Is(err, fallback.ErrCacheMiss) {
		t.Errorf("least recently used entry not evicted")
	}
	if _, err := cache.Serve(context.Background(), mk("d")); !errors.Is(err, fallback.ErrCacheMiss) {
		t.Errorf("oversized entry stored")
	}
	for _, cfg := range []fallback.CacheConfig{{TTL: -1}, {MaxEntries: -1}, {MaxBytes: -1}, {MaxEntryBytes: 10, MaxBytes: 5}} {
		if _, err := fallback.NewCache(cfg); err == nil {
			t.Errorf("NewCache(%+v) accepted an invalid config", cfg)
		}
	}
}

func TestSetModel(t *testing.T) {
	out, err := fallback.SetModel([]byte(`{"model":"gpt-4o","temperature":0.5,"messages":[]}`), "llama3.2")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	_ = json.Unmarshal(out, &v)
	if v["model"] != "llama3.2" || v["temperature"] != 0.5 {
		t.Errorf("SetModel = %s", out)
	}
	if _, err := fallback.SetModel([]byte(`[1,2]`), "x"); err == nil {
		t.Error("SetModel accepted a non-object body")
	}
}

func FuzzCacheKey(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`))
	f.Add([]byte(`{"b":1,"a":2}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := &fallback.Request{Operation: "/chat/completions", Body: body}
		k1, err1 := fallback.CacheKey(r)
		k2, err2 := fallback.CacheKey(r)
		if (err1 == nil) != (err2 == nil) || k1 != k2 {
			t.Fatalf("CacheKey not deterministic: %q %v / %q %v", k1, err1, k2, err2)
		}
	})
}
