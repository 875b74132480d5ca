// Command quickstart shows infermesh keeping go-openai calls alive through an outage.
//
// With no flags and no network it starts two in-process OpenAI-compatible servers
// (package llmtest): a primary that goes through a scripted timeline (healthy, a
// brownout of 50% 503s, an outage where the mesh reports "no healthy upstream", then
// recovery) and a healthy but slower local model, a stand-in for Ollama. It drives
// concurrent chat calls, streamed and not, through an unmodified go-openai client
// whose *http.Client comes from llmclient, and prints one row per phase.
//
// With -base-url (and -model, and the API key in OPENAI_API_KEY) it sends a few
// calls to that OpenAI-compatible server instead and prints the same table.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

func main() {
	var o options
	flag.StringVar(&o.baseURL, "base-url", "", "an OpenAI-compatible API base URL (for example https://api.openai.com/v1); empty runs the in-process demo")
	flag.StringVar(&o.model, "model", "gpt-4o-mini", "the model to call")
	flag.DurationVar(&o.phase, "phase", 2500*time.Millisecond, "how long each phase of the demo lasts")
	flag.IntVar(&o.workers, "workers", 8, "concurrent callers")
	flag.Parse()
	o.apiKey = os.Getenv("OPENAI_API_KEY")
	if err := run(context.Background(), os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type options struct {
	baseURL, model, apiKey string
	phase                  time.Duration
	workers                int
}

// phase is one step of the primary's scripted timeline.
type phase struct {
	name  string
	rules []llmtest.Rule
}

var timeline = []phase{
	{name: "healthy"},
	{name: "brownout", rules: []llmtest.Rule{{Fault: llmtest.Status(503), Probability: 0.5}}},
	{name: "outage", rules: []llmtest.Rule{{Fault: llmtest.EnvoyNoHealthyUpstream()}}},
	{name: "recovery"},
}

func run(ctx context.Context, out io.Writer, o options) error {
	if o.workers <= 0 || o.phase <= 0 {
		return errors.New("-workers and -phase must be positive")
	}
	if o.baseURL != "" {
		return runRemote(ctx, out, o)
	}
	rows, err := demo(ctx, out, o)
	if err != nil {
		return err
	}
	printTable(out, rows)
	lost := 0
	for _, r := range rows {
		lost += r.calls - r.ok - r.fallback - r.failed
	}
	fmt.Fprintf(out, "\nEvery call ended as a success, a marked fallback, or a typed error: %d lost.\n", lost)
	return nil
}

// demo runs the scripted timeline and returns one row per phase.
func demo(ctx context.Context, out io.Writer, o options) ([]row, error) {

	primary := llmtest.NewServer(llmtest.WithRandomSource(7), llmtest.WithLatency(llmtest.Fixed(15*time.Millisecond)),
		llmtest.WithChunks(6, "resilient "), llmtest.WithChunkInterval(llmtest.Fixed(3*time.Millisecond)))
	defer primary.Close()
	local := llmtest.NewServer(llmtest.WithLatency(llmtest.Fixed(40*time.Millisecond)),
		llmtest.WithChunks(4, "local "), llmtest.WithChunkInterval(llmtest.Fixed(5*time.Millisecond)))
	defer local.Close()

	fmt.Fprintf(out, "primary   %s/v1  (scripted: %s)\n", primary.URL, phaseNames())
	fmt.Fprintf(out, "fallback  %s/v1  (a second llmtest server standing in for a local Ollama)\n\n", local.URL)

	st := &stats{entered: map[breaker.State]int{}}
	tr, err := newTransport(local.URL+"/v1", st)
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	cfg := openai.DefaultConfig("sk-demo-not-a-real-key")
	cfg.BaseURL = primary.URL + "/v1"
	cfg.HTTPClient = &http.Client{Transport: tr}
	client := openai.NewClientWithConfig(cfg)

	var rows []row
	for _, ph := range timeline {
		primary.SetPhase(llmtest.Phase{Name: ph.name, Rules: ph.rules})
		st.reset()
		r := drive(ctx, client, o, ph.name)
		r.retries, r.transitions = st.retries.Load(), st.transitions()
		rows = append(rows, r)
	}
	return rows, nil
}

// newTransport is the infermesh part of a go-openai program, with a fallback and
// shorter breaker timings so the demo shows a whole open/half-open/closed cycle.
func newTransport(localBase string, st *stats) (*llmclient.Transport, error) {
	ollama, err := fallback.NewEndpoint(fallback.EndpointConfig{Name: "local-llama", BaseURL: localBase, Model: "llama3.2"})
	if err != nil {
		return nil, err
	}
	cfg := llmclient.Config{
		Fallback: fallback.Config{Targets: []fallback.Target{ollama}},
		Hooks: breaker.Hooks{
			OnStateChange: func(_ string, from, to breaker.State) { st.transition(from, to) },
			OnRetry:       func(context.Context, breaker.RetryEvent) { st.retries.Add(1) },
		},
	}
	// The chat route keeps its defaults (a 50% failure rate trips the breaker) but with
	// a window of 10 calls judged after 5, an open state of 1 s and 2 half-open trials, and
	// timeouts and backoff in milliseconds, so the demo shows a whole cycle in seconds.
	chat := cfg.Route("chat")
	p := &chat.Policy
	p.WindowSize, p.MinimumCalls, p.OpenDuration, p.HalfOpenCalls = 10, 5, time.Second, 2
	p.Backoff = breaker.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	p.Timeout, p.PerTryTimeout = 5*time.Second, 2*time.Second
	chat.Stream = llmclient.StreamPolicy{FirstTokenTimeout: 2 * time.Second, IdleTimeout: time.Second}
	return llmclient.NewTransport(cfg)
}

// stats counts the policy's events within a phase.
type stats struct {
	retries atomic.Int64
	mu      sync.Mutex
	entered map[breaker.State]int // transitions into each state
}

func (s *stats) reset() {
	s.retries.Store(0)
	s.mu.Lock()
	s.entered = map[breaker.State]int{}
	s.mu.Unlock()
}

func (s *stats) transition(_, to breaker.State) {
	s.mu.Lock()
	s.entered[to]++
	s.mu.Unlock()
}

// transitions says how often the breaker entered each state, e.g. "open 2, closed 1".
func (s *stats) transitions() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, st := range []breaker.State{breaker.StateOpen, breaker.StateHalfOpen, breaker.StateClosed} {
		if n := s.entered[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", st, n))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// row is one phase's results.
type row struct {
	phase                       string
	calls, ok, fallback, failed int
	p50, p99                    time.Duration
	retries                     int64
	transitions                 string
	tokens                      int
	failures                    map[string]int
}

// drive runs concurrent calls, half of them streamed, for one phase.
func drive(ctx context.Context, client *openai.Client, o options, name string) row {
	r := row{phase: name, failures: map[string]int{}}
	var mu sync.Mutex
	var lat []time.Duration
	deadline := time.Now().Add(o.phase)
	var wg sync.WaitGroup
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 500 && time.Now().Before(deadline); i++ {
				start := time.Now()
				res := oneCall(ctx, client, o.model, (w+i)%2 == 0)
				d := time.Since(start)
				mu.Lock()
				lat = append(lat, d)
				r.calls++
				r.tokens += res.tokens
				switch {
				case res.err != nil:
					r.failed++
					r.failures[errorKind(res.err)]++
				case res.fallback != "":
					r.fallback++
				default:
					r.ok++
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}(w)
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[(len(lat)*99)/100]
	}
	return r
}

type result struct {
	fallback string
	tokens   int
	err      error
}

func oneCall(ctx context.Context, client *openai.Client, model string, stream bool) result {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req := openai.ChatCompletionRequest{
		Model:    model,
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say something resilient."}},
	}
	if !stream {
		resp, err := client.CreateChatCompletion(ctx, req)
		if err != nil {
			return result{err: err}
		}
		return result{fallback: resp.Header().Get(fallback.HeaderFallback), tokens: resp.Usage.TotalTokens}
	}
	req.Stream = true
	req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	s, err := client.CreateChatCompletionStream(ctx, req)
	if err != nil {
		return result{err: err}
	}
	defer s.Close()
	res := result{fallback: s.Header().Get(fallback.HeaderFallback)}
	for range 10_000 {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return res
		}
		if err != nil {
			res.err = err
			return res
		}
		if chunk.Usage != nil {
			res.tokens += chunk.Usage.TotalTokens
		}
	}
	res.err = errors.New("stream did not end within 10000 chunks")
	return res
}

// errorKind names a failure for the summary without printing upstream messages.
func errorKind(err error) string {
	var api *openai.APIError
	var se *llmclient.StreamError
	switch {
	case errors.As(err, &se):
		return "stream cut"
	case errors.As(err, &api):
		return fmt.Sprintf("HTTP %d", api.HTTPStatusCode)
	case errors.Is(err, breaker.ErrOpen):
		return "breaker open"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	}
	return "other"
}

func printTable(out io.Writer, rows []row) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tcalls\tsucceeded\tfallback\tfailed\tp50\tp99\tretries\tbreaker entered\ttokens")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t%d\n", r.phase, r.calls, r.ok, r.fallback, r.failed,
			r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.retries, r.transitions, r.tokens)
	}
	tw.Flush()
	for _, r := range rows {
		for kind, n := range r.failures {
			fmt.Fprintf(out, "  %s: %d failed with %s\n", r.phase, n, kind)
		}
	}
}

func phaseNames() string {
	names := make([]string, len(timeline))
	for i, p := range timeline {
		names[i] = p.name
	}
	return strings.Join(names, " -> ")
}

// runRemote sends a few calls to a real OpenAI-compatible server.
func runRemote(ctx context.Context, out io.Writer, o options) error {
	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	cfg := openai.DefaultConfig(o.apiKey)
	cfg.BaseURL = o.baseURL
	cfg.HTTPClient = hc
	client := openai.NewClientWithConfig(cfg)
	r := row{phase: "remote", failures: map[string]int{}}
	var lat []time.Duration
	for i := range 4 {
		start := time.Now()
		res := oneCall(ctx, client, o.model, i%2 == 1)
		lat = append(lat, time.Since(start))
		r.calls++
		r.tokens += res.tokens
		if res.err != nil {
			r.failed++
			r.failures[errorKind(res.err)]++
		} else {
			r.ok++
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.p50, r.p99, r.transitions = lat[len(lat)/2], lat[len(lat)-1], "-"
	printTable(out, []row{r})
	return nil
}
