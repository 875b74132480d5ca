package llmtest_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// kinds returns the fault kinds of srv's records.
func kinds(srv *llmtest.Server) []llmtest.Kind {
	var out []llmtest.Kind
	for _, r := range srv.Requests() {
		out = append(out, r.Fault.Kind)
	}
	return out
}

func TestEnqueueThenPhase(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithRules(llmtest.Rule{Fault: llmtest.Status(500), Count: 1}))
	srv.Enqueue(llmtest.Status(503), llmtest.Fault{}, llmtest.Status(429))
	var got []int
	for range 6 {
		got = append(got, post(t, srv, llmtest.PathChatCompletions, chatBody).status)
	}
	if want := []int{503, 200, 429, 500, 200, 200}; !slices.Equal(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	want := []llmtest.Kind{llmtest.KindStatus, llmtest.KindNone, llmtest.KindStatus, llmtest.KindStatus, llmtest.KindNone, llmtest.KindNone}
	if k := kinds(srv); !slices.Equal(k, want) {
		t.Errorf("recorded kinds = %v, want %v", k, want)
	}
}

func TestRulesByRoute(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	srv.SetPhase(llmtest.Phase{Name: "embeddings down", Rules: []llmtest.Rule{
		{Path: llmtest.PathEmbeddings, Fault: llmtest.EnvoyNoHealthyUpstream(), Count: 2},
		{Path: llmtest.PathEmbeddings, Fault: llmtest.Status(429)},
	}})
	var got []string
	for _, path := range []string{llmtest.PathChatCompletions, llmtest.PathEmbeddings, llmtest.PathEmbeddings, llmtest.PathChatCompletions, llmtest.PathEmbeddings} {
		body := chatBody
		if path == llmtest.PathEmbeddings {
			body = `{"model":"m","input":"x"}`
		}
		got = append(got, strconv.Itoa(post(t, srv, path, body).status))
	}
	if want := "200 503 503 200 429"; strings.Join(got, " ") != want {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	for _, r := range srv.Requests() {
		if r.Phase != "embeddings down" {
			t.Errorf("request %d phase %q", r.Seq, r.Phase)
		}
	}
}

func TestProbabilityIsReproducible(t *testing.T) {
	t.Parallel()
	run := func(seed uint64) []llmtest.Kind {
		srv := llmtest.NewServer(llmtest.WithRandomSource(seed), llmtest.WithRules(
			llmtest.Rule{Fault: llmtest.Status(503), Probability: 0.3},
			llmtest.Rule{Fault: llmtest.EnvoyOverflow(), Probability: 0.2},
		))
		defer srv.Close()
		for range 40 {
			post(t, srv, llmtest.PathChatCompletions, chatBody)
		}
		return kinds(srv)
	}
	a, b, c := run(42), run(42), run(43)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different faults:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 42 and 43 gave the same faults %v", a)
	}
	count := map[llmtest.Kind]int{}
	for _, k := range a {
		count[k]++
	}
	// Expected: 12 status, 5.6 overflow, 22.4 none; a generous band catches a broken draw.
	if count[llmtest.KindStatus] < 4 || count[llmtest.KindStatus] > 22 || count[llmtest.KindEnvoyOverflow] < 1 || count[llmtest.KindNone] < 10 {
		t.Errorf("fault counts %v are far from the probabilities", count)
	}
}

// TestPhaseSwitchUnderLoad switches phases while clients send requests, and checks that
// every response matches the phase its request was recorded in.
func TestPhaseSwitchUnderLoad(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	phases := []llmtest.Phase{
		{Name: "ok"},
		{Name: "down", Rules: []llmtest.Rule{{Fault: llmtest.Status(503)}}},
		{Name: "overloaded", Rules: []llmtest.Rule{{Fault: llmtest.EnvoyOverflow().WithEnvoyHeaders(0, 2)}}},
	}
	want := map[string]int{"": 200, "ok": 200, "down": 503, "overloaded": 503}
	type seen struct {
		seq, status int
		envoy       bool
	}
	var (
		mu  sync.Mutex
		obs []seen
		wg  sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for range 50 {
				resp, err := srv.Client().Post(srv.URL+llmtest.PathChatCompletions, "application/json", strings.NewReader(chatBody))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				s := seen{status: resp.StatusCode, envoy: resp.Header.Get("Server") == "envoy"}
				if id := resp.Header.Get("X-Request-Id"); id != "" {
					s.seq, _ = strconv.Atoi(strings.TrimPrefix(id, "req_"))
				}
				mu.Lock()
				obs = append(obs, s)
				mu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	switches := 0
	for running := true; running; switches++ {
		select {
		case <-done:
			running = false
		case <-time.After(time.Millisecond):
			srv.SetPhase(phases[switches%len(phases)])
		}
	}

	recs := srv.Requests()
	if len(recs) != len(obs) {
		t.Fatalf("%d records, %d responses", len(recs), len(obs))
	}
	byPhase := map[string]int{}
	for _, r := range recs {
		byPhase[r.Phase]++
	}
	for _, o := range obs {
		if o.envoy { // Envoy replies carry no request id: check the status only
			if o.status != 503 {
				t.Errorf("envoy reply with status %d", o.status)
			}
			continue
		}
		r := recs[o.seq-1]
		if o.status != want[r.Phase] {
			t.Errorf("request %d in phase %q got %d, want %d", o.seq, r.Phase, o.status, want[r.Phase])
		}
	}
	if len(byPhase) < 2 {
		t.Errorf("requests by phase %v: the switches (%d) did not interleave with the requests", byPhase, switches)
	}
}

func TestInvalidScriptsPanic(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	for name, f := range map[string]func(){
		"status 200":        func() { srv.Enqueue(llmtest.Status(200)) },
		"negative chunks":   func() { srv.Enqueue(llmtest.ResetAfter(-1)) },
		"unknown kind":      func() { srv.Enqueue(llmtest.Fault{Kind: 99}) },
		"probability 2":     func() { srv.SetRules(llmtest.Rule{Probability: 2}) },
		"negative count":    func() { srv.SetRules(llmtest.Rule{Count: -1}) },
		"bad option":        func() { llmtest.NewUnstartedServer(llmtest.WithChunks(-1, "x")) },
		"bad dimension":     func() { llmtest.NewUnstartedServer(llmtest.WithEmbeddingDimension(0)) },
		"bad phase option":  func() { llmtest.NewUnstartedServer(llmtest.WithRules(llmtest.Rule{Fault: llmtest.Oversized(-5)})) },
		"bad retry format":  func() { srv.Enqueue(llmtest.Status(429).WithRetryAfter(1, 9)) },
		"negative max body": func() { llmtest.NewUnstartedServer(llmtest.WithMaxBodyBytes(-1)) },
	} {
		func() {
			defer func() {
				r := recover()
				if msg := fmt.Sprint(r); r == nil || !strings.HasPrefix(msg, "llmtest: ") {
					t.Errorf("%s: panic %v, want an llmtest message", name, r)
				}
			}()
			f()
		}()
	}
	if r := post(t, srv, llmtest.PathChatCompletions, chatBody); r.status != http.StatusOK {
		t.Errorf("a rejected script changed the server: status %d", r.status)
	}
}
