package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// burst is the number of concurrent calls per case.
const burst = 64

// Timings are short so the whole matrix runs in well under a minute; the deadline is
// what each call's context allows, and slack what real sockets under -race may add.
const (
	callDeadline = 3 * time.Second
	slack        = 750 * time.Millisecond
	firstToken   = 300 * time.Millisecond
	idle         = 300 * time.Millisecond
)

// faults is every fault kind llmtest injects.
func faults() []struct {
	name  string
	fault llmtest.Fault
} {
	return []struct {
		name  string
		fault llmtest.Fault
	}{
		{"429", llmtest.Status(429).WithRetryAfter(50*time.Millisecond, llmtest.RetryAfterMillis)},
		{"429-date", llmtest.Status(429).WithRetryAfter(time.Second, llmtest.RetryAfterDate)},
		{"500", llmtest.Status(500)},
		{"502", llmtest.Status(502)},
		{"503", llmtest.Status(503)},
		{"504", llmtest.Status(504)},
		{"envoy-overflow", llmtest.EnvoyOverflow()},
		{"envoy-no-healthy-upstream", llmtest.EnvoyNoHealthyUpstream()},
		{"envoy-connect-failure", llmtest.EnvoyConnectFailure()},
		{"envoy-upstream-timeout", llmtest.EnvoyUpstreamTimeout()},
		{"reset", llmtest.Reset()},
		{"reset-after-2", llmtest.ResetAfter(2)},
		{"stall-before-headers", llmtest.StallBeforeHeaders(0)},
		{"stall-before-first-chunk", llmtest.StallBeforeFirstChunk(0)},
		{"stall-after-2", llmtest.StallAfter(2, 0)},
		{"error-event", llmtest.ErrorEvent(0)}, // an error object in a 200 JSON body when not streamed
		{"error-event-after-2", llmtest.ErrorEvent(2)},
		{"malformed-json", llmtest.MalformedJSON(1)},
		{"oversized", llmtest.Oversized(512 << 10)},
		{"mesh-retried", llmtest.Status(503).WithEnvoyHeaders(2*time.Millisecond, 2)},
	}
}

// outcome is how one call ended.
type outcome int

const (
	success outcome = iota
	servedByFallback
	typedError
	lost // an untyped error, or past the deadline
)

type tally struct {
	mu     sync.Mutex
	counts [4]int
	notes  []string
}

func (t *tally) add(o outcome, note string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts[o]++
	if o == lost && len(t.notes) < 5 {
		t.notes = append(t.notes, note)
	}
}

func typed(err error) bool {
	var (
		oa *openai.APIError
		or *openai.RequestError
		la *llmclient.APIError
		ls *llmclient.StreamError
		be *breaker.Error
	)
	return errors.As(err, &oa) || errors.As(err, &or) || errors.As(err, &la) || errors.As(err, &ls) ||
		errors.As(err, &be) || errors.Is(err, breaker.ErrOpen)
}

func chatRequest(stream bool) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "chaos"}},
		Stream:   stream,
	}
}

// call makes one call and says how it ended.
func call(client *openai.Client, stream bool) (outcome, string) {
	ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	start := time.Now()
	var err error
	var servedBy string
	if stream {
		var s *openai.ChatCompletionStream
		s, err = client.CreateChatCompletionStream(ctx, chatRequest(true))
		if err == nil {
			servedBy = s.Header().Get(fallback.HeaderFallback)
			for range 10_000 {
				if _, err = s.Recv(); err != nil {
					break
				}
			}
			if errors.Is(err, io.EOF) {
				err = nil
			}
			s.Close()
		}
	} else {
		var resp openai.ChatCompletionResponse
		resp, err = client.CreateChatCompletion(ctx, chatRequest(false))
		servedBy = resp.Header().Get(fallback.HeaderFallback)
	}
	if took := time.Since(start); took > callDeadline+slack {
		return lost, fmt.Sprintf("took %v", took)
	}
	switch {
	case err == nil && servedBy != "":
		return servedByFallback, ""
	case err == nil:
		return success, ""
	case typed(err):
		return typedError, ""
	}
	return lost, fmt.Sprintf("%T: %v", err, err)
}

// rig is a primary, an optional local fallback and an infermesh client, on loopback.
type rig struct {
	primary, local *llmtest.Server
	tr             *llmclient.Transport
	client         *openai.Client
	transitions    atomic.Int32
}

func newRig(t *testing.T, withFallback bool, tune func(*llmclient.Route)) *rig {
	t.Helper()
	r := &rig{primary: llmtest.NewServer(llmtest.WithChunks(4, "ok "), llmtest.WithChunkInterval(llmtest.Fixed(2*time.Millisecond)))}
	routes := llmclient.DefaultRoutes()
	chat := &routes[0]
	chat.Policy.PerTryTimeout = 600 * time.Millisecond
	chat.Policy.Backoff = breaker.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	chat.Policy.MaxRetryAfter = 2 * time.Second
	chat.Stream = llmclient.StreamPolicy{FirstTokenTimeout: firstToken, IdleTimeout: idle}
	if tune != nil {
		tune(chat)
	}
	cfg := llmclient.Config{Routes: routes, MaxResponseBytes: 256 << 10, MaxEventBytes: 256 << 10,
		Hooks: breaker.Hooks{OnStateChange: func(string, breaker.State, breaker.State) { r.transitions.Add(1) }}}
	if withFallback {
		r.local = llmtest.NewServer(llmtest.WithChunks(2, "local "))
		ep, err := fallback.NewEndpoint(fallback.EndpointConfig{Name: "local", BaseURL: r.local.URL + "/v1", Model: "llama3.2"})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Fallback = fallback.Config{Targets: []fallback.Target{ep}}
	}
	tr, err := llmclient.NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.tr = tr
	oc := openai.DefaultConfig("sk-chaos-secret-0000")
	oc.BaseURL = r.primary.URL + "/v1"
	oc.HTTPClient = &http.Client{Transport: tr}
	r.client = openai.NewClientWithConfig(oc)
	return r
}

// close releases everything; afterwards no goroutine (and so no connection) may remain.
func (r *rig) close() {
	r.tr.CloseIdleConnections()
	r.primary.Close()
	if r.local != nil {
		r.local.Close()
	}
}

// runBurst makes burst concurrent calls and tallies them.
func runBurst(r *rig, stream bool) *tally {
	tl := &tally{}
	var wg sync.WaitGroup
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, note := call(r.client, stream)
			tl.add(o, note)
		}()
	}
	wg.Wait()
	return tl
}

// TestChaosMatrix runs every fault, streamed and not, with and without a fallback, as
// bursts of concurrent calls. Nothing may be lost and nothing may leak.
func TestChaosMatrix(t *testing.T) {
	var total [4]int
	for _, f := range faults() {
		for _, stream := range []bool{false, true} {
			for _, withFallback := range []bool{false, true} {
				name := fmt.Sprintf("%s/stream=%v/fallback=%v", f.name, stream, withFallback)
				t.Run(name, func(t *testing.T) {
					r := newRig(t, withFallback, nil)
					r.primary.SetRules(llmtest.Rule{Fault: f.fault})
					tl := runBurst(r, stream)
					r.close()
					goleak.VerifyNone(t)
					for i, n := range tl.counts {
						total[i] += n
					}
					if tl.counts[lost] > 0 {
						t.Errorf("%d calls lost: %v", tl.counts[lost], tl.notes)
					}
					if !withFallback && tl.counts[servedByFallback] > 0 {
						t.Errorf("%d calls marked as fallback without one", tl.counts[servedByFallback])
					}
					t.Logf("success %d, fallback %d, typed error %d, lost %d", tl.counts[success], tl.counts[servedByFallback], tl.counts[typedError], tl.counts[lost])
				})
			}
		}
	}
	t.Logf("matrix: %d calls: success %d, fallback %d, typed error %d, lost %d",
		total[0]+total[1]+total[2]+total[3], total[success], total[servedByFallback], total[typedError], total[lost])
}

// TestRetryAmplificationUnderOutage: under a total outage the upstream sees at most 1 +
// the retry budget requests per logical call, and none once the breaker is open.
func TestRetryAmplificationUnderOutage(t *testing.T) {
	r := newRig(t, false, func(rt *llmclient.Route) {
		rt.Policy.WindowSize, rt.Policy.MinimumCalls = 200, 100 // judge after a full burst
		rt.Policy.OpenDuration = time.Minute
	})
	defer goleak.VerifyNone(t)
	defer r.close()
	r.primary.SetRules(llmtest.Rule{Fault: llmtest.Status(503)})
	calls := 0
	for range 3 {
		runBurst(r, false)
		calls += burst
	}
	reqs := len(r.primary.Requests())
	const budget = 0.20 // breaker.DefaultBudgetPercent
	ratio := float64(reqs) / float64(calls)
	t.Logf("outage: %d calls, %d upstream requests, amplification %.3f", calls, reqs, ratio)
	if ratio > 1+budget+float64(breaker.DefaultMinRetryConcurrency)/float64(burst) {
		t.Errorf("amplification %.3f exceeds 1 + the retry budget", ratio)
	}
	if st := r.tr.State("/v1/chat/completions", hostOf(r.primary.URL)); st != breaker.StateOpen {
		t.Fatalf("breaker %v after %d failed calls, want open", st, calls)
	}
	before := len(r.primary.Requests())
	runBurst(r, false)
	if after := len(r.primary.Requests()); after != before {
		t.Errorf("an open breaker let %d requests through", after-before)
	}
}

// TestBreakerOpensAndRecovers: the breaker opens within its window under an outage,
// and closes after recovery plus OpenDuration plus the half-open calls.
func TestBreakerOpensAndRecovers(t *testing.T) {
	const open = 300 * time.Millisecond
	r := newRig(t, true, func(rt *llmclient.Route) {
		rt.Policy.WindowSize, rt.Policy.MinimumCalls, rt.Policy.HalfOpenCalls = 10, 10, 2
		rt.Policy.OpenDuration = open
		rt.Policy.MaxAttempts = 1
	})
	defer goleak.VerifyNone(t)
	defer r.close()
	host := hostOf(r.primary.URL)
	r.primary.SetRules(llmtest.Rule{Fault: llmtest.EnvoyNoHealthyUpstream()})
	for i := 1; i <= 10; i++ {
		if o, note := call(r.client, false); o != servedByFallback {
			t.Fatalf("call %d during the outage: outcome %d %s, want the fallback", i, o, note)
		}
	}
	if st := r.tr.State("/v1/chat/completions", host); st != breaker.StateOpen {
		t.Fatalf("breaker %v after a full window of failures, want open", st)
	}
	if n := len(r.primary.Requests()); n != 10 {
		t.Errorf("%d requests reached the primary before the breaker opened, want the window's 10", n)
	}
	r.primary.SetRules() // recovery
	time.Sleep(open + 50*time.Millisecond)
	for i := range 2 { // the half-open trial calls
		if o, note := call(r.client, false); o != success {
			t.Fatalf("trial call %d: outcome %d %s, want success", i, o, note)
		}
	}
	if st := r.tr.State("/v1/chat/completions", host); st != breaker.StateClosed {
		t.Errorf("breaker %v after recovery, OpenDuration and the trial calls, want closed", st)
	}
}

// TestStreamsNeverRetriedAfterContent: a burst of streams that break after their
// first chunks reaches the upstream exactly once per call.
func TestStreamsNeverRetriedAfterContent(t *testing.T) {
	for _, f := range []llmtest.Fault{llmtest.ResetAfter(1), llmtest.StallAfter(1, 0), llmtest.ErrorEvent(1), llmtest.MalformedJSON(1)} {
		t.Run(f.Kind.String(), func(t *testing.T) {
			r := newRig(t, true, nil)
			r.primary.SetRules(llmtest.Rule{Fault: f})
			tl := runBurst(r, true)
			reqs := len(r.primary.Requests())
			r.close()
			goleak.VerifyNone(t)
			if reqs != burst {
				t.Errorf("%d upstream requests for %d streams: a stream was retried after content", reqs, burst)
			}
			if tl.counts[typedError] != burst {
				t.Errorf("outcomes %v: every stream should end with a typed error", tl.counts)
			}
		})
	}
}

// TestLongHealthyStreamNotCut: a stream that outlives every per-try and overall limit
// of its route, but keeps producing chunks, is delivered whole.
func TestLongHealthyStreamNotCut(t *testing.T) {
	r := newRig(t, false, func(rt *llmclient.Route) {
		rt.Policy.Timeout, rt.Policy.PerTryTimeout = 500*time.Millisecond, 250*time.Millisecond
	})
	defer goleak.VerifyNone(t)
	defer r.close()
	long := llmtest.NewServer(llmtest.WithChunks(60, "t "), llmtest.WithChunkInterval(llmtest.Fixed(20*time.Millisecond)))
	defer long.Close()
	oc := openai.DefaultConfig("sk-chaos")
	oc.BaseURL = long.URL + "/v1"
	oc.HTTPClient = &http.Client{Transport: r.tr}
	client := openai.NewClientWithConfig(oc)
	s, err := client.CreateChatCompletionStream(context.Background(), chatRequest(true))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start, chunks := time.Now(), 0
	for range 1000 {
		c, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stream cut after %d chunks and %v: %v", chunks, time.Since(start), err)
		}
		if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
			chunks++
		}
	}
	if chunks != 60 || time.Since(start) < time.Second {
		t.Errorf("%d chunks in %v; want all 60 over more than the route's 500 ms limit", chunks, time.Since(start))
	}
}

func hostOf(u string) string {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return req.URL.Host
}
