// Command canary shows a model migration done in the client: two versions of a model
// behind one go-openai client, traffic shifted 90/10, 70/30, 20/80 and 0/100 while
// callers run, internal testers pinned to the new version by a header, and
// conversations kept on one version by their session header.
//
// It needs no network: both versions are in-process OpenAI-compatible servers
// (package llmtest), v1 answering "v1" and v2 answering "v2". It prints one row per
// phase: each version's share of the calls, the testers' calls that reached v2, the
// sessions that stayed on their version (a session moves only when the weights shift
// toward another version, or its version has more than its share of the calls in
// flight), the errors (none) and the latency.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
	"github.com/infermesh/infermesh/steer"
)

func main() {
	var o options
	flag.DurationVar(&o.phase, "phase", 2*time.Second, "how long each phase lasts")
	flag.IntVar(&o.workers, "workers", 8, "concurrent callers")
	flag.Parse()
	if _, err := run(context.Background(), os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "canary:", err)
		os.Exit(1)
	}
}

type options struct {
	phase   time.Duration
	workers int
}

// phases are the weights of v1 and v2, in order.
var phases = []struct {
	name   string
	v1, v2 int
}{{"90/10", 90, 10}, {"70/30", 70, 30}, {"20/80", 20, 80}, {"0/100", 0, 100}}

// row is what one phase measured.
type row struct {
	phase          string
	calls          int
	byVersion      map[string]int
	plain, plainV2 int // calls no rule or session decides, and those that reached v2
	testers, toV2  int // testers' calls, and those that reached v2
	sessions, kept int // session calls, and those that stayed on their session's version
	errors         int
	failures       []string
	latencies      []time.Duration
}

// byHost sends each request to the in-process server of its host.
type byHost map[string]http.RoundTripper

func (b byHost) RoundTrip(r *http.Request) (*http.Response, error) {
	return b[r.URL.Host].RoundTrip(r)
}

// headers adds per-call headers (go-openai has none of its own) from the context.
type headers struct{ next http.RoundTripper }

type headersKey struct{}

func (h headers) RoundTrip(r *http.Request) (*http.Response, error) {
	if kv, ok := r.Context().Value(headersKey{}).([2]string); ok && kv[0] != "" {
		r = r.Clone(r.Context())
		r.Header.Set(kv[0], kv[1])
	}
	return h.next.RoundTrip(r)
}

func run(ctx context.Context, out io.Writer, o options) ([]row, error) {
	v1 := llmtest.NewUnstartedServer(llmtest.WithChunks(1, "v1"), llmtest.WithLatency(llmtest.Uniform(2*time.Millisecond, 8*time.Millisecond)))
	v2 := llmtest.NewUnstartedServer(llmtest.WithChunks(1, "v2"), llmtest.WithLatency(llmtest.Uniform(2*time.Millisecond, 8*time.Millisecond)))
	defer v1.Close()
	defer v2.Close()
	tr, err := llmclient.NewTransport(llmclient.Config{
		Base: byHost{"v1.invalid": v1.Transport(), "v2.invalid": v2.Transport()},
		Steering: &llmclient.Steering{
			Backends: []llmclient.Backend{
				{Name: "v1", BaseURL: "http://v1.invalid/v1", Weight: phases[0].v1},
				{Name: "v2", BaseURL: "http://v2.invalid/v1", Weight: phases[0].v2},
			},
			// Internal testers always reach the new version.
			Rules: []steer.Rule{{Header: "x-canary-user", Exact: "true", Backend: "v2"}},
		},
	})
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	cfg := openai.DefaultConfig("sk-canary")
	cfg.BaseURL = "http://api.invalid/v1" // what the application configured; infermesh picks per call
	cfg.HTTPClient = &http.Client{Transport: headers{tr}}
	client := openai.NewClientWithConfig(cfg)

	var rows []row
	home := map[string]string{} // session -> version, across phases
	for _, ph := range phases {
		if err := tr.SetWeights(map[string]int{"v1": ph.v1, "v2": ph.v2}); err != nil {
			return nil, err
		}
		r := drive(ctx, client, o, home)
		r.phase = ph.name
		rows = append(rows, r)
	}
	print(out, rows)
	return rows, nil
}

// drive runs the phase's callers: one in four calls is a tester's, one in four belongs
// to one of 20 conversations.
func drive(ctx context.Context, client *openai.Client, o options, home map[string]string) row {
	r := row{byVersion: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(o.phase)
	for w := range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				kind, hdr := i%4, [2]string{}
				switch kind {
				case 1:
					hdr = [2]string{"x-canary-user", "true"}
				case 2:
					hdr = [2]string{"x-session-id", fmt.Sprintf("conversation-%d", (w*7+i)%20)}
				}
				start := time.Now()
				resp, err := client.CreateChatCompletion(context.WithValue(ctx, headersKey{}, hdr), openai.ChatCompletionRequest{
					Model: "chat-model", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}})
				took := time.Since(start)
				mu.Lock()
				r.calls++
				if err != nil {
					r.errors++
					r.failures = append(r.failures, err.Error())
					mu.Unlock()
					continue
				}
				v := resp.Choices[0].Message.Content
				r.byVersion[v]++
				r.latencies = append(r.latencies, took)
				switch kind {
				case 0, 3:
					r.plain++
					if v == "v2" {
						r.plainV2++
					}
				case 1:
					r.testers++
					if v == "v2" {
						r.toV2++
					}
				case 2:
					r.sessions++
					if h, ok := home[hdr[1]]; !ok || h == v {
						r.kept++
					}
					home[hdr[1]] = v
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return r
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1))]
}

func print(out io.Writer, rows []row) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tcalls\tv1\tv2\tsplit to v2\ttesters on v2\tsessions kept\terrors\tp50\tp99")
	for _, r := range rows {
		share := func(n, of int) string { return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(max(of, 1))) }
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d/%d\t%d/%d\t%d\t%v\t%v\n", r.phase, r.calls,
			share(r.byVersion["v1"], r.calls), share(r.byVersion["v2"], r.calls), share(r.plainV2, r.plain),
			r.toV2, r.testers, r.kept, r.sessions, r.errors,
			quantile(r.latencies, 0.5).Round(100*time.Microsecond), quantile(r.latencies, 0.99).Round(100*time.Microsecond))
	}
	_ = tw.Flush()
}
