package llmclient_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
	"github.com/infermesh/infermesh/steer"
)

// byHost sends each request to the in-memory llmtest server of its host.
type byHost map[string]*llmtest.Server

func (b byHost) RoundTrip(r *http.Request) (*http.Response, error) {
	srv, ok := b[r.URL.Host]
	if !ok {
		return nil, fmt.Errorf("no server for %s", r.URL.Host)
	}
	return srv.Transport().RoundTrip(r)
}

// canary is two model versions behind one client: v1 and v2, each its own llmtest
// server, told apart by their answers.
type canary struct {
	v1, v2 *llmtest.Server
	tr     *llmclient.Transport
	client *openai.Client
}

func newCanary(t *testing.T, st llmclient.Steering, tune func(*llmclient.Config)) (*canary, func()) {
	t.Helper()
	c := &canary{v1: llmtest.NewUnstartedServer(llmtest.WithChunks(1, "v1")), v2: llmtest.NewUnstartedServer(llmtest.WithChunks(1, "v2"))}
	if st.Backends == nil {
		st.Backends = []llmclient.Backend{
			{Name: "v1", BaseURL: "http://v1.invalid/v1", Weight: 90},
			{Name: "v2", BaseURL: "http://v2.invalid/v1", Weight: 10},
		}
	}
	cfg := llmclient.Config{Base: byHost{"v1.invalid": c.v1, "v2.invalid": c.v2}, Steering: &st}
	if tune != nil {
		tune(&cfg)
	}
	tr, err := llmclient.NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.tr = tr
	oc := openai.DefaultConfig(secretKey)
	oc.BaseURL = "http://sdk.invalid/v1" // what the user configured; infermesh picks per call
	oc.HTTPClient = &http.Client{Transport: tr}
	c.client = openai.NewClientWithConfig(oc)
	return c, func() { tr.CloseIdleConnections(); c.v1.Close(); c.v2.Close() }
}

// ask makes one chat call with the given headers and says which version answered.
func (c *canary) ask(ctx context.Context, h map[string]string) (string, error) {
	req := chatReq(false)
	resp, err := c.client.CreateChatCompletion(withHeaders(ctx, h), req)
	if err != nil {
		return "", err
	}
	if got := resp.Header().Get(llmclient.HeaderBackend); got != resp.Choices[0].Message.Content {
		return "", fmt.Errorf("backend header %q for an answer of %q", got, resp.Choices[0].Message.Content)
	}
	return resp.Choices[0].Message.Content, nil
}

type headersKey struct{}

func withHeaders(ctx context.Context, h map[string]string) context.Context {
	return context.WithValue(ctx, headersKey{}, h)
}

// headerTransport adds the headers a test put in the request's context: go-openai has
// no per-call headers of its own.
type headerTransport struct{ next http.RoundTripper }

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if h, ok := r.Context().Value(headersKey{}).(map[string]string); ok && len(h) > 0 {
		r = r.Clone(r.Context())
		for k, v := range h {
			r.Header.Set(k, v)
		}
	}
	return t.next.RoundTrip(r)
}

func (c *canary) withHeaderSupport() {
	oc := openai.DefaultConfig(secretKey)
	oc.BaseURL = "http://sdk.invalid/v1"
	oc.HTTPClient = &http.Client{Transport: headerTransport{c.tr}}
	c.client = openai.NewClientWithConfig(oc)
}

// TestCanarySplit: at 90/10 the new version gets 8 to 12% of 2,000 calls; a header
// rule sends every tester's call to it; a weight change applies to the next call while
// callers run, and a migration to 0/100 fails no call.
func TestCanarySplit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, done := newCanary(t, llmclient.Steering{Rules: []steer.Rule{{Header: "x-canary-user", Exact: "true", Backend: "v2"}}}, nil)
		defer done()
		c.withHeaderSupport()
		count := map[string]int{}
		for range 2000 {
			v, err := c.ask(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			count[v]++
		}
		if share := float64(count["v2"]) / 2000; share < 0.08 || share > 0.12 {
			t.Errorf("v2 took %.1f%% at 90/10", share*100)
		}
		for range 200 {
			if v, err := c.ask(context.Background(), map[string]string{"x-canary-user": "true"}); err != nil || v != "v2" {
				t.Fatalf("a tester's call went to %q (%v)", v, err)
			}
		}
		// 90/10 -> 70/30 -> 20/80 -> 0/100 while 8 callers run; each change applies to
		// the next call, and no call fails.
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var mu sync.Mutex
		var failures []error
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := c.ask(context.Background(), nil); err != nil {
						mu.Lock()
						failures = append(failures, err)
						mu.Unlock()
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
		for _, w := range [][2]int{{70, 30}, {20, 80}, {0, 100}} {
			time.Sleep(50 * time.Millisecond)
			if err := c.tr.SetWeights(map[string]int{"v1": w[0], "v2": w[1]}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond)
		close(stop)
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("%d calls failed during the migration: %v", len(failures), failures[0])
		}
		for range 50 {
			if v, _ := c.ask(context.Background(), nil); v != "v2" {
				t.Fatalf("a call went to %s after 0/100", v)
			}
		}
	})
}

// TestSessionAffinity: a session keeps its backend; adding a third backend moves about
// a third of the sessions, never more than 40%; an open breaker moves its sessions,
// and they come back after recovery.
func TestSessionAffinity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		even := []llmclient.Backend{{Name: "v1", BaseURL: "http://v1.invalid/v1", Weight: 50}, {Name: "v2", BaseURL: "http://v2.invalid/v1", Weight: 50}}
		c, done := newCanary(t, llmclient.Steering{Backends: even}, func(cfg *llmclient.Config) {
			p := &cfg.Route("chat").Policy
			p.WindowSize, p.MinimumCalls, p.MaxAttempts, p.OpenDuration, p.HalfOpenCalls = 2, 2, 1, 10*time.Second, 1
		})
		defer done()
		c.withHeaderSupport()
		home, err := c.ask(context.Background(), map[string]string{"x-session-id": "s-1"})
		if err != nil {
			t.Fatal(err)
		}
		for range 1000 {
			if v, err := c.ask(context.Background(), map[string]string{"x-session-id": "s-1"}); err != nil || v != home {
				t.Fatalf("session s-1 moved from %s to %s (%v)", home, v, err)
			}
		}
		// The session header reaches the upstream unchanged, for the mesh's own hash.
		reqs := map[string]*llmtest.Server{"v1": c.v1, "v2": c.v2}[home].Requests()
		if h := reqs[len(reqs)-1].Header; h.Get("X-Session-Id") != "s-1" || h.Get("X-Model-Name") != "gpt-4o-mini" {
			t.Errorf("upstream headers %v", h)
		}

		// The home backend's breaker opens: the session goes elsewhere, then comes back.
		srv := map[string]*llmtest.Server{"v1": c.v1, "v2": c.v2}[home]
		srv.SetRules(llmtest.Rule{Fault: llmtest.Status(500)})
		for range 2 {
			_, _ = c.ask(context.Background(), map[string]string{"x-session-id": "s-1"})
		}
		if st := c.tr.State("/v1/chat/completions", home); st != breaker.StateOpen {
			t.Fatalf("breaker of %s %v", home, st)
		}
		away, err := c.ask(context.Background(), map[string]string{"x-session-id": "s-1"})
		if err != nil || away == home {
			t.Fatalf("with %s open, the session went to %q (%v)", home, away, err)
		}
		srv.SetRules()
		time.Sleep(10 * time.Second)
		_, _ = c.ask(context.Background(), map[string]string{"x-session-id": "s-1"}) // the half-open trial
		if v, err := c.ask(context.Background(), map[string]string{"x-session-id": "s-1"}); err != nil || v != home {
			t.Fatalf("after recovery the session is on %q (%v), want %s", v, err, home)
		}
	})
}

// TestAddingABackendMovesFewSessions: with a third backend, at most 40% of 1,000
// sessions change backend (about a third, 1/N, is the expected share).
func TestAddingABackendMovesFewSessions(t *testing.T) {
	backends := []llmclient.Backend{{Name: "a", BaseURL: "http://a.invalid/v1", Weight: 1}, {Name: "b", BaseURL: "http://b.invalid/v1", Weight: 1}}
	homes := func(bs []llmclient.Backend) map[string]string {
		var mu sync.Mutex
		seen := map[string]string{}
		tr, err := llmclient.NewTransport(llmclient.Config{Steering: &llmclient.Steering{Backends: bs},
			Base: rtFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				seen[r.Header.Get("X-Session-Id")] = r.URL.Host
				mu.Unlock()
				return answer(r), nil
			})})
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: tr}
		for i := range 1000 {
			req, _ := http.NewRequest(http.MethodPost, "http://sdk.invalid/v1/chat/completions", strings.NewReader(chatBody))
			req.Header.Set("X-Session-Id", fmt.Sprint("session-", i))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		return seen
	}
	before := homes(backends)
	after := homes(append(backends, llmclient.Backend{Name: "c", BaseURL: "http://c.invalid/v1", Weight: 1}))
	moved := 0
	for s, h := range before {
		if after[s] != h {
			moved++
		}
	}
	if moved > 400 || moved == 0 {
		t.Errorf("%d of 1000 sessions moved when a third backend came", moved)
	}
	t.Logf("%d of 1000 sessions moved to the third backend", moved)
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// answer is a chat completion for r, read to its end.
func answer(r *http.Request) *http.Response {
	if r.Body != nil {
		r.Body.Close()
	}
	rec := httptest.NewRecorder()
	writeJSON(rec, chatObject(false, ""))
	resp := rec.Result()
	resp.Request = r
	return resp
}

// TestAzureBackend: an Azure OpenAI backend gets the deployment path, the api-version
// and its key in api-key, never the caller's Authorization; the caller's SDK keeps its
// own base URL.
func TestAzureBackend(t *testing.T) {
	var got *http.Request
	azure := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		writeJSON(w, chatObject(false, ""))
	}))
	defer azure.Close()
	hc, err := llmclient.NewHTTPClient(llmclient.Config{Steering: &llmclient.Steering{Backends: []llmclient.Backend{{
		Name: "azure", BaseURL: azure.URL, APIKey: "az-key-1", Weight: 1,
		Azure: &llmclient.Azure{Deployment: "gpt4o-prod", APIVersion: "2024-10-21"},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	oc := openai.DefaultConfig(secretKey)
	oc.BaseURL = "https://api.openai.com/v1" // the SDK keeps what the user configured
	oc.HTTPClient = hc
	resp, err := openai.NewClientWithConfig(oc).CreateChatCompletion(context.Background(), chatReq(false))
	if err != nil {
		t.Fatal(err)
	}
	if got.URL.Path != "/openai/deployments/gpt4o-prod/chat/completions" || got.URL.Query().Get("api-version") != "2024-10-21" {
		t.Errorf("Azure got %s", got.URL)
	}
	if got.Header.Get("Api-Key") != "az-key-1" || got.Header.Get("Authorization") != "" {
		t.Errorf("Azure credentials: api-key %q, Authorization %q", got.Header.Get("Api-Key"), got.Header.Get("Authorization"))
	}
	if resp.Header().Get(llmclient.HeaderBackend) != "azure" {
		t.Errorf("backend header %q", resp.Header().Get(llmclient.HeaderBackend))
	}
}

// TestHedgeOnSlowFirstToken: a stream whose first output has not come after the hedge
// delay goes to a second backend too; the first to commit wins, the other is cancelled
// at once, and the caller sees one backend's answer, never two interleaved.
func TestHedgeOnSlowFirstToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		even := []llmclient.Backend{{Name: "v1", BaseURL: "http://v1.invalid/v1", Weight: 10}, {Name: "v2", BaseURL: "http://v2.invalid/v1", Weight: 1}}
		c, done := newCanary(t, llmclient.Steering{Backends: even}, func(cfg *llmclient.Config) {
			cfg.Route("chat").Hedge = &llmclient.Hedge{MinDelay: 100 * time.Millisecond, MaxDelay: 200 * time.Millisecond}
		})
		defer done()
		c.v1.Enqueue(llmtest.StallBeforeFirstChunk(time.Second))
		start := time.Now()
		res := readStream(context.Background(), c.client, chatReq(true))
		if res.err != nil || res.openErr != nil {
			t.Fatal(res.err, res.openErr)
		}
		if res.content != "v2" || res.header.Get(llmclient.HeaderBackend) != "v2" {
			t.Errorf("got %q from %q, want v2's whole answer", res.content, res.header.Get(llmclient.HeaderBackend))
		}
		if took := time.Since(start); took >= time.Second {
			t.Errorf("the hedged call took %v: it waited for the slow backend", took)
		}
		if n1, n2 := len(c.v1.Requests()), len(c.v2.Requests()); n1 != 1 || n2 != 1 {
			t.Errorf("requests v1 %d v2 %d, want one each", n1, n2)
		}
		// A fast backend is not hedged.
		res = readStream(context.Background(), c.client, chatReq(true))
		if res.err != nil || res.content != "v1" || len(c.v2.Requests()) != 1 {
			t.Errorf("an unhedged call: %v %q, v2 requests %d", res.err, res.content, len(c.v2.Requests()))
		}
	})
}
