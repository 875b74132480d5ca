// Package hedging measures what hedging on a slow first chunk does to the tail: two
// OpenAI-compatible backends (llmtest, in memory) where one call in twenty waits a
// second before its first chunk, called with and without llmclient's Hedge.
//
//	go test -run Hedging -v ./hedging/
package hedging

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	openai "github.com/sashabaranov/go-openai"
	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	calls       = 2000
	concurrency = 20
	slowShare   = 0.05
	slowFirst   = time.Second
)

// figures are one run's measurements.
type figures struct {
	p50, p99, p999 time.Duration // time to first chunk, as callers saw it
	requests       int           // upstream requests for the calls
	mixed          int           // streams that held both backends' words
	failed         int
}

// run makes the calls through a client with or without hedging, on a fake clock.
func run(t *testing.T, hedge bool) figures {
	var f figures
	synctest.Test(t, func(t *testing.T) {
		slow := llmtest.Rule{Fault: llmtest.StallBeforeFirstChunk(slowFirst), Probability: slowShare}
		a := llmtest.NewUnstartedServer(llmtest.WithChunks(4, "a "), llmtest.WithLatency(llmtest.Uniform(5*time.Millisecond, 15*time.Millisecond)),
			llmtest.WithChunkInterval(llmtest.Fixed(5*time.Millisecond)), llmtest.WithRandomSource(1), llmtest.WithRules(slow))
		b := llmtest.NewUnstartedServer(llmtest.WithChunks(4, "b "), llmtest.WithLatency(llmtest.Uniform(5*time.Millisecond, 15*time.Millisecond)),
			llmtest.WithChunkInterval(llmtest.Fixed(5*time.Millisecond)), llmtest.WithRandomSource(2), llmtest.WithRules(slow))
		defer a.Close()
		defer b.Close()
		ta, tb := a.Transport(), b.Transport()
		cfg := llmclient.Config{
			Base: rt(func(r *http.Request) (*http.Response, error) {
				if r.URL.Host == "a.invalid" {
					return ta.RoundTrip(r)
				}
				return tb.RoundTrip(r)
			}),
			Steering: &llmclient.Steering{Backends: []llmclient.Backend{
				{Name: "a", BaseURL: "http://a.invalid/v1", Weight: 1},
				{Name: "b", BaseURL: "http://b.invalid/v1", Weight: 1},
			}},
		}
		if hedge {
			cfg.Route("chat").Hedge = &llmclient.Hedge{} // p95, within [100ms, 10s]
		}
		tr, err := llmclient.NewTransport(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.CloseIdleConnections()
		oc := openai.DefaultConfig("sk-bench")
		oc.BaseURL = "http://api.invalid/v1"
		oc.HTTPClient = &http.Client{Transport: tr}
		client := openai.NewClientWithConfig(oc)

		var mu sync.Mutex
		var ttfc []time.Duration
		var wg sync.WaitGroup
		next := make(chan struct{})
		for range concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range next {
					first, text, err := stream(client)
					mu.Lock()
					switch {
					case err != nil:
						f.failed++
					case strings.Contains(text, "a") && strings.Contains(text, "b"):
						f.mixed++
					default:
						ttfc = append(ttfc, first)
					}
					mu.Unlock()
				}
			}()
		}
		for range calls {
			next <- struct{}{}
		}
		close(next)
		wg.Wait()
		sort.Slice(ttfc, func(i, j int) bool { return ttfc[i] < ttfc[j] })
		q := func(p float64) time.Duration { return ttfc[int(p*float64(len(ttfc)-1))] }
		f.p50, f.p99, f.p999 = q(0.5), q(0.99), q(0.999)
		f.requests = len(a.Requests()) + len(b.Requests())
	})
	return f
}

// stream makes one streamed call and returns its time to first chunk and its text.
func stream(client *openai.Client) (time.Duration, string, error) {
	start := time.Now()
	s, err := client.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{
		Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}, Stream: true})
	if err != nil {
		return 0, "", err
	}
	defer s.Close()
	var first time.Duration
	var text string
	for range 100 {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return first, text, nil
		}
		if err != nil {
			return 0, "", err
		}
		for _, c := range chunk.Choices {
			if c.Delta.Content != "" && first == 0 {
				first = time.Since(start)
			}
			text += c.Delta.Content
		}
	}
	return first, text, nil
}

type rt func(*http.Request) (*http.Response, error)

func (f rt) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestHedgingCutsTheTail: hedged at p95 of each backend's recent times to first chunk,
// the p99 time to first chunk falls at least 5x, with at most 10% more upstream
// requests, and no caller sees a stream mixed from two backends.
func TestHedgingCutsTheTail(t *testing.T) {
	off, on := run(t, false), run(t, true)
	extra := float64(on.requests-calls) / calls
	t.Logf("\n| | p50 | p99 | p99.9 | upstream requests | mixed streams | failed |\n|---|--:|--:|--:|--:|--:|--:|\n"+
		"| no hedging | %v | %v | %v | %d | %d | %d |\n| hedged at p95 | %v | %v | %v | %d (+%.1f%%) | %d | %d |\n"+
		"p99 falls %.1fx, p99.9 %.1fx (The Tail at Scale: p99.9 1,800 ms -> 74 ms, 24x, with 2%% more requests)",
		off.p50, off.p99, off.p999, off.requests, off.mixed, off.failed,
		on.p50, on.p99, on.p999, on.requests, 100*extra, on.mixed, on.failed,
		float64(off.p99)/float64(on.p99), float64(off.p999)/float64(on.p999))
	if off.failed+on.failed+off.mixed+on.mixed > 0 {
		t.Errorf("failed %d/%d, mixed %d/%d", off.failed, on.failed, off.mixed, on.mixed)
	}
	if ratio := float64(off.p99) / float64(on.p99); ratio < 5 {
		t.Errorf("p99 fell %.1fx, want at least 5x", ratio)
	}
	if extra > 0.10 {
		t.Errorf("%.1f%% more upstream requests, want at most 10%%", 100*extra)
	}
}
