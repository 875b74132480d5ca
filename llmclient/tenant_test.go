package llmclient_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/transport"
)

// post sends body to url through hc with the given headers.
func post(t *testing.T, hc *http.Client, url, body string, h http.Header) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

func bearer(key string) http.Header { return http.Header{"Authorization": {"Bearer " + key}} }

const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`

// cacheClient is a client whose only fallback is a cache it fills itself.
func cacheClient(t *testing.T, cfg llmclient.Config) (*http.Client, *fallback.Cache) {
	t.Helper()
	cache, err := fallback.NewCache(fallback.CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cache = cache
	cfg.Fallback = fallback.Config{Targets: []fallback.Target{cache}}
	hc, err := llmclient.NewHTTPClient(fastRetries(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	return hc, cache
}

// TestCacheNeverCrossesTenants: the last good answer is kept per tenant (every
// credential header counts), upstream host and path. During an outage a caller with
// another key, or calling another host or deployment path, is not served tenant A's
// answer; tenant A is.
func TestCacheNeverCrossesTenants(t *testing.T) {
	hc, cache := cacheClient(t, llmclient.Config{})
	u := newUpstream(t)
	other := newUpstream(t)
	outage := fault{envoy: "no healthy upstream"}
	if _, _, err := post(t, hc, u.URL+"/v1/chat/completions", chatBody, bearer("sk-tenant-A-0001")); err != nil {
		t.Fatal(err)
	}
	if cache.Len() != 1 {
		t.Fatalf("cache holds %d answers, want 1", cache.Len())
	}
	u.faults = []fault{outage, outage, outage, outage, outage}
	other.faults = []fault{outage}
	for name, c := range map[string]struct {
		url string
		h   http.Header
	}{
		"another bearer key":          {u.URL + "/v1/chat/completions", bearer("sk-tenant-B-0002")},
		"the same key, x-api-key too": {u.URL + "/v1/chat/completions", http.Header{"Authorization": {"Bearer sk-tenant-A-0001"}, "X-Api-Key": {"k2"}}},
		"another host":                {other.URL + "/v1/chat/completions", bearer("sk-tenant-A-0001")},
		"another deployment":          {u.URL + "/openai/deployments/other/chat/completions", bearer("sk-tenant-A-0001")},
	} {
		resp, body, err := post(t, hc, c.url, chatBody, c.h)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(fallback.HeaderDegraded) != "" {
			t.Errorf("%s: served %v %s from the cache (err %v)", name, resp.Header, body, err)
		}
	}
	resp, body, err := post(t, hc, u.URL+"/v1/chat/completions", chatBody, bearer("sk-tenant-A-0001"))
	if err != nil || resp.StatusCode != 200 || resp.Header.Get(fallback.HeaderDegraded) != "cache" || !bytes.Contains(body, []byte("Hello there")) {
		t.Fatalf("tenant A not served its own answer: %v %v %s", err, resp.Header, body)
	}
}

// TestTenantHeaderSplitsOneKey: a service that calls with one key for many customers names
// their header in Config.TenantHeader, and a customer is never served another's answer.
func TestTenantHeaderSplitsOneKey(t *testing.T) {
	hc, _ := cacheClient(t, llmclient.Config{TenantHeader: "x-tenant-id"})
	u := newUpstream(t)
	customer := func(id string) http.Header {
		h := bearer("sk-service-key-0001")
		if id != "" {
			h.Set("X-Tenant-Id", id)
		}
		return h
	}
	if _, _, err := post(t, hc, u.URL+"/v1/chat/completions", chatBody, customer("acme")); err != nil {
		t.Fatal(err)
	}
	outage := fault{envoy: "no healthy upstream"}
	u.faults = []fault{outage, outage, outage, outage, outage, outage}
	for _, id := range []string{"globex", ""} {
		resp, body, err := post(t, hc, u.URL+"/v1/chat/completions", chatBody, customer(id))
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(fallback.HeaderDegraded) != "" {
			t.Errorf("customer %q: served %v %s from the cache (err %v)", id, resp.Header, body, err)
		}
	}
	resp, body, err := post(t, hc, u.URL+"/v1/chat/completions", chatBody, customer("acme"))
	if err != nil || resp.Header.Get(fallback.HeaderDegraded) != "cache" || !bytes.Contains(body, []byte("Hello there")) {
		t.Fatalf("customer acme not served its own answer: %v %v %s", err, resp.Header, body)
	}
	if _, err := llmclient.NewTransport(llmclient.Config{TenantHeader: "x tenant"}); err == nil || !strings.Contains(err.Error(), "TenantHeader") {
		t.Errorf("an invalid TenantHeader: %v, want an error naming it", err)
	}
}

// TestCacheOnlyReplaysWhatIsSafe: a create (a batch) is never stored nor replayed; a
// streamed tool-call answer is kept whole, tool calls and finish reason included.
func TestCacheOnlyReplaysWhatIsSafe(t *testing.T) {
	hc, cache := cacheClient(t, llmclient.Config{})
	u := newUpstream(t)
	if _, _, err := post(t, hc, u.URL+"/v1/batches", `{"input_file_id":"file-1","endpoint":"/v1/chat/completions"}`, bearer("sk-a")); err != nil {
		t.Fatal(err)
	}
	if cache.Len() != 0 {
		t.Fatalf("a batch create was stored (%d entries)", cache.Len())
	}
	// A streamed answer that calls a tool.
	oc := openai.DefaultConfig("sk-a")
	oc.BaseURL = u.URL + "/v1"
	oc.HTTPClient = hc
	c := openai.NewClientWithConfig(oc)
	req := chatReq(true)
	req.Tools = []openai.Tool{weatherTool}
	if res := readStream(context.Background(), c, req); res.err != nil || res.openErr != nil {
		t.Fatal(res.err, res.openErr)
	}
	if cache.Len() != 1 {
		t.Fatalf("cache holds %d answers, want the streamed one", cache.Len())
	}
	outage := fault{envoy: "no healthy upstream"}
	u.faults = []fault{outage, outage, outage}
	resp, body, err := post(t, hc, u.URL+"/v1/batches", `{"input_file_id":"file-1","endpoint":"/v1/chat/completions"}`, bearer("sk-a"))
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a batch create during an outage: %v %d %s", err, resp.StatusCode, body)
	}
	req.Stream = false
	got, err := c.CreateChatCompletion(context.Background(), req)
	if err != nil || got.Header().Get(fallback.HeaderDegraded) != "cache" {
		t.Fatalf("from the cache: %v", err)
	}
	ch := got.Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != "weather" ||
		ch.Message.ToolCalls[0].Function.Arguments != `{"city":"Oslo"}` {
		t.Fatalf("cached answer lost its tool calls: %+v", ch)
	}
	// And as a stream again: the tool call's deltas and its finish reason.
	req.Stream = true
	s, err := c.CreateChatCompletionStream(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var args, finish string
	for range 100 {
		chunk, err := s.Recv()
		if err != nil {
			break
		}
		for _, c := range chunk.Choices {
			for _, tc := range c.Delta.ToolCalls {
				args += tc.Function.Arguments
			}
			if c.FinishReason != "" {
				finish = string(c.FinishReason)
			}
		}
	}
	if args != `{"city":"Oslo"}` || finish != "tool_calls" {
		t.Fatalf("cached stream: arguments %q finish %q", args, finish)
	}
}

// allocated returns the bytes the process allocated while f ran.
func allocated(f func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestNothingResentAfterTheAnswerStarted: once a non-streamed answer's headers have
// arrived, a broken body is a typed error that is not retried (the upstream did, and
// billed, the work), and a body past the cap (a decompression bomb) is not downloaded
// again; the client never holds more than the cap.
func TestNothingResentAfterTheAnswerStarted(t *testing.T) {
	var hits int
	var mu sync.Mutex
	bomb := gzipped(64 << 20) // 64 MiB of zeros, about 64 KiB on the wire
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		hits++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/embeddings") { // the bomb
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(bomb)
			return
		}
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","choices":[{"message":{"content":"Hel`)
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}))
	defer srv.Close()
	hc, err := llmclient.NewHTTPClient(fastRetries(llmclient.Config{MaxResponseBytes: 1 << 20}))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()

	_, _, err = post(t, hc, srv.URL+"/v1/chat/completions", chatBody, bearer("sk-a"))
	var be *transport.BodyError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "response body broken after the upstream answered") {
		t.Errorf("broken body: err %v, want a *transport.BodyError", err)
	}
	if hits != 1 {
		t.Errorf("broken body: %d upstream requests, want 1", hits)
	}

	hits = 0
	alloc := allocated(func() {
		_, _, err = post(t, hc, srv.URL+"/v1/embeddings", `{"model":"e","input":"x"}`, bearer("sk-a"))
	})
	if !errors.Is(err, llmclient.ErrResponseTooLarge) || hits != 1 {
		t.Errorf("bomb: err %v after %d requests, want ErrResponseTooLarge after 1", err, hits)
	}
	if alloc > 8<<20 {
		t.Errorf("bomb: %d MiB allocated for a 1 MiB cap", alloc>>20)
	}
}

func gzipped(n int) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range n >> 20 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	return b.Bytes()
}

// TestBuffersCappedBeforeTheyGrow: a stream that only ever sends role chunks (no
// output) and a chunked 200 body, both past MaxResponseBytes, end in
// ErrResponseTooLarge, and the client allocates a small multiple of the cap, not the
// body.
func TestBuffersCappedBeforeTheyGrow(t *testing.T) {
	chunk := []byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/embeddings") {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/event-stream")
		}
		for range (8 << 20) / len(chunk) { // 8 MiB, chunked
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	hc, err := llmclient.NewHTTPClient(fastRetries(llmclient.Config{MaxResponseBytes: 1 << 20}))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	for _, c := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"m","stream":true}`},
		{"/v1/embeddings", `{"model":"e","input":"x"}`},
	} {
		var err error
		alloc := allocated(func() { _, _, err = post(t, hc, srv.URL+c.path, c.body, nil) })
		if !errors.Is(err, llmclient.ErrResponseTooLarge) {
			t.Errorf("%s: err %v, want ErrResponseTooLarge", c.path, err)
		}
		if alloc > 6<<20 {
			t.Errorf("%s: %d MiB allocated for a 1 MiB cap", c.path, alloc>>20)
		}
	}
}

// TestFallbackGetsOnlyWhatItNeeds: a fallback endpoint receives content type, accept,
// the trace context and the headers named in its config; no credential of any kind,
// and the caller's OpenAI organization and project only on the primary's host.
func TestFallbackGetsOnlyWhatItNeeds(t *testing.T) {
	var got http.Header
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		_, _ = io.Copy(io.Discard, r.Body)
		writeJSON(w, chatObject(false, ""))
	}))
	defer local.Close()
	ep, err := fallback.NewEndpoint(fallback.EndpointConfig{Name: "local", BaseURL: local.URL + "/v1", APIKey: "local-key", ForwardHeaders: []string{"X-Session-Id", "X-Api-Key"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.CloseIdleConnections()
	hc, err := llmclient.NewHTTPClient(fastRetries(llmclient.Config{Fallback: fallback.Config{Targets: []fallback.Target{ep}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	u := newUpstream(t, fault{envoy: "no healthy upstream"})
	h := http.Header{
		"Authorization": {"Bearer sk-primary"}, "X-Api-Key": {"k1"}, "Ocp-Apim-Subscription-Key": {"k2"},
		"X-Goog-Api-Key": {"k3"}, "Helicone-Auth": {"Bearer k4"}, "Cf-Aig-Authorization": {"Bearer k5"},
		"X-Portkey-Api-Key": {"k6"}, "Openai-Organization": {"org-1"}, "Openai-Project": {"proj-1"},
		"X-Session-Id": {"s-42"}, "Accept": {"application/json"},
	}
	resp, _, err := post(t, hc, u.URL+"/v1/chat/completions", chatBody, h)
	if err != nil || resp.Header.Get(fallback.HeaderFallback) != "local" {
		t.Fatalf("not served by the fallback: %v", err)
	}
	for k := range got {
		switch k {
		case "Content-Type", "Accept", "X-Session-Id", "Authorization", "Content-Length", "Accept-Encoding", "User-Agent", "Traceparent":
		default:
			t.Errorf("the fallback on another host received %s: %q", k, got[k])
		}
	}
	if got.Get("Authorization") != "Bearer local-key" || got.Get("X-Session-Id") != "s-42" || got.Get("X-Api-Key") != "" {
		t.Errorf("fallback headers %v", got)
	}
}

// TestCredentialsStayWithTheirHost: a redirect to another host drops every credential
// header (net/http drops only Authorization); one to the same host keeps them.
func TestCredentialsStayWithTheirHost(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]http.Header{}
	final := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Host+r.URL.Path] = r.Header.Clone()
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		writeJSON(w, chatObject(false, ""))
	}
	other := httptest.NewServer(http.HandlerFunc(final))
	defer other.Close()
	var self *httptest.Server
	self = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/chat/completions":
			final(w, r)
		case r.URL.Query().Get("same") == "1":
			http.Redirect(w, r, self.URL+"/v2/chat/completions", http.StatusTemporaryRedirect)
		default:
			http.Redirect(w, r, other.URL+"/v1/chat/completions", http.StatusTemporaryRedirect)
		}
	}))
	defer self.Close()
	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	creds := http.Header{"Authorization": {"Bearer sk-1"}, "Api-Key": {"az-1"}, "X-Api-Key": {"x-1"},
		"Ocp-Apim-Subscription-Key": {"apim-1"}, "X-Goog-Api-Key": {"g-1"}}
	for _, q := range []string{"", "?same=1"} {
		if resp, body, err := post(t, hc, self.URL+"/v1/chat/completions"+q, chatBody, creds); err != nil || resp.StatusCode != 200 {
			t.Fatalf("redirect %q: %v %s", q, err, body)
		}
	}
	cross := seen[strings.TrimPrefix(other.URL, "http://")+"/v1/chat/completions"]
	same := seen[strings.TrimPrefix(self.URL, "http://")+"/v2/chat/completions"]
	if cross == nil || same == nil {
		t.Fatalf("seen %v", seen)
	}
	for k := range creds {
		if cross.Get(k) != "" {
			t.Errorf("a cross-host redirect carried %s", k)
		}
		if same.Get(k) != creds.Get(k) {
			t.Errorf("a same-host redirect lost %s", k)
		}
	}
}

// TestKeyInAnyCredentialHeaderScrubbed: a key sent in x-api-key (or any credential
// header) and echoed by the upstream appears neither in the error the caller's SDK
// builds nor in the body it decodes.
func TestKeyInAnyCredentialHeaderScrubbed(t *testing.T) {
	const key = "xk-live-7a1f0c9e22d84b6bb1c3"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, `{"error":{"message":"key %s is not valid for this model","type":"invalid_request_error"}}`, r.Header.Get("X-Api-Key"))
	}))
	defer srv.Close()
	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	resp, body, err := post(t, hc, srv.URL+"/v1/chat/completions", chatBody, http.Header{"X-Api-Key": {key}})
	if err != nil || resp.StatusCode != 400 {
		t.Fatal(err)
	}
	if bytes.Contains(body, []byte(key)) || bytes.Contains(body, []byte(key[len(key)-4:])) {
		t.Fatalf("the key reached the caller: %s", body)
	}
}

// TestRouteTimeoutBoundsTheFallback: a route's Timeout bounds the whole call, the
// fallback included: a hanging fallback cannot hold the caller past it (the caller gets
// the primary's failure), and a call with no time left for a fallback fails fast with a
// typed error.
func TestRouteTimeoutBoundsTheFallback(t *testing.T) {
	var fallbackHits int
	var mu sync.Mutex
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server sees the client go
		mu.Lock()
		fallbackHits++
		mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	defer hang.Close()
	hits := func() int {
		mu.Lock()
		defer mu.Unlock()
		return fallbackHits
	}
	ep, err := fallback.NewEndpoint(fallback.EndpointConfig{Name: "hang", BaseURL: hang.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.CloseIdleConnections()
	cfg := fastRetries(llmclient.Config{Fallback: fallback.Config{Targets: []fallback.Target{ep}}})
	cfg.Route("chat").Policy.Timeout = time.Second
	hc, err := llmclient.NewHTTPClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()

	// The primary fails at once; the fallback hangs: the route's second ends it.
	u := newUpstream(t, fault{status: 503}, fault{status: 503})
	start := time.Now()
	resp, body, err := post(t, hc, u.URL+"/v1/chat/completions", chatBody, nil)
	took := time.Since(start)
	if err != nil || resp.StatusCode != 503 || hits() != 1 {
		t.Errorf("hanging fallback: err %v, status %v, %d fallback requests", err, resp, hits())
	}
	if bytes.Contains(body, []byte("fallback: fallback:")) || strings.Contains(fmt.Sprint(err), "fallback: fallback:") {
		t.Errorf("an error repeats its prefix: %v %s", err, body)
	}
	// A second is the route's limit; the hanging fallback would take 30.
	if took > 10*time.Second {
		t.Errorf("the call took %v with a 1 s route timeout", took)
	}

	// The primary stalls through the route's time: nothing is left for a fallback.
	u = newUpstream(t, fault{stall: 30 * time.Second, cutAfter: -1, truncate: -1})
	start = time.Now()
	_, _, err = post(t, hc, u.URL+"/v1/chat/completions", chatBody, nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second || hits() != 1 {
		t.Errorf("no time left: err %v after %v, %d fallback requests", err, time.Since(start), hits())
	}
}

// TestOpenStreamKeepsNoCopyOfItsPrompt: once a stream is open (committed) nothing sends
// its request again, so neither the call, nor the attempt's request the transport and the
// caller's response keep, holds a copy of the prompt: besides the caller's own 4 MiB, an
// open stream with a 4 MiB prompt holds far less than one more copy.
func TestOpenStreamKeepsNoCopyOfItsPrompt(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n"+
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n")
		w.(http.Flusher).Flush()
		select { // the stream stays open until the test is done
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()

	const promptSize = 4 << 20
	prompt := []byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"` +
		strings.Repeat("x", promptSize) + `"}]}`)
	var before, open runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", bytes.NewReader(prompt))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	if n, err := resp.Body.Read(buf); err != nil || !bytes.Contains(buf[:n], []byte(`"Hi"`)) {
		t.Fatalf("first read: %q, %v", buf[:n], err)
	}
	runtime.GC()
	runtime.ReadMemStats(&open)
	held := int64(open.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap held with the stream open: %.1f MiB for a %d MiB prompt", float64(held)/(1<<20), promptSize>>20)
	if held > promptSize/2 {
		t.Errorf("an open stream holds %.1f MiB more for a %d MiB prompt the caller holds: copies of the prompt are kept",
			float64(held)/(1<<20), promptSize>>20)
	}
	runtime.KeepAlive(prompt)
	runtime.KeepAlive(resp)
}
