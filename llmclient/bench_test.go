package llmclient_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
	"github.com/infermesh/infermesh/transport"
)

// BenchmarkOverhead compares bare go-openai with go-openai plus infermesh against a
// loopback llmtest server, with the same pooled transport settings in both. The two
// clients alternate in blocks of calls within one run, so that both see the same
// machine; it reports each one's p50 and p99 latency and process CPU time per call
// (client and in-process server together: the difference is infermesh's cost), and
// the differences. ns/op is the time of one bare call plus one infermesh call.
//
// "stream" lets infermesh ask for the usage chunk on the caller's behalf (for tracing),
// which costs the server one more chunk; "stream-usage" asks for it in both clients,
// so the server does the same work.
func BenchmarkOverhead(b *testing.B) {
	srv := llmtest.NewServer(llmtest.WithChunks(8, "tok "), llmtest.WithMaxRecords(16))
	defer srv.Close()
	for _, kind := range []string{"unary", "stream", "stream-usage"} {
		b.Run(kind, func(b *testing.B) {
			tr, err := transport.New(transport.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			hc, err := llmclient.NewHTTPClient(llmclient.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			bare := newCaller(b, srv, &http.Client{Transport: tr}, kind)
			mesh := newCaller(b, srv, hc, kind)
			for range 50 { // warm both pools
				bare.call()
				mesh.call()
			}
			const block = 25
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += block {
				n := min(block, b.N-done)
				bare.run(n)
				mesh.run(n)
			}
			b.StopTimer()
			bp50, bp99, bcpu := bare.stats()
			mp50, mp99, mcpu := mesh.stats()
			b.ReportMetric(float64(bp50), "bare-p50-ns")
			b.ReportMetric(float64(mp50), "infermesh-p50-ns")
			b.ReportMetric(100*float64(mp50-bp50)/float64(bp50), "p50-added-%")
			b.ReportMetric(float64(bp99), "bare-p99-ns")
			b.ReportMetric(float64(mp99), "infermesh-p99-ns")
			b.ReportMetric(float64(bcpu), "bare-cpu-ns")
			b.ReportMetric(float64(mcpu-bcpu), "cpu-added-ns")
		})
	}
}

// caller makes one kind of call through one client and keeps its figures.
type caller struct {
	b      *testing.B
	client *openai.Client
	req    openai.ChatCompletionRequest
	stream bool
	lat    []time.Duration
	cpu    time.Duration
}

func newCaller(b *testing.B, srv *llmtest.Server, hc *http.Client, kind string) *caller {
	cfg := openai.DefaultConfig("sk-bench")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = hc
	c := &caller{b: b, client: openai.NewClientWithConfig(cfg), stream: kind != "unary", req: chatReq(kind != "unary")}
	if kind == "stream-usage" {
		c.req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	}
	return c
}

func (c *caller) call() {
	ctx := context.Background()
	if !c.stream {
		if _, err := c.client.CreateChatCompletion(ctx, c.req); err != nil {
			c.b.Fatal(err)
		}
		return
	}
	if res := readStream(ctx, c.client, c.req); res.err != nil || res.openErr != nil {
		c.b.Fatal(res.err, res.openErr)
	}
}

func (c *caller) run(n int) {
	cpu0 := cpuTime()
	for range n {
		start := time.Now()
		c.call()
		c.lat = append(c.lat, time.Since(start))
	}
	c.cpu += cpuTime() - cpu0
}

// stats returns the p50 and p99 latency and the CPU time per call.
func (c *caller) stats() (p50, p99, cpu time.Duration) {
	if len(c.lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(c.lat)
	return c.lat[len(c.lat)/2], c.lat[len(c.lat)*99/100], c.cpu / time.Duration(len(c.lat))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type namedClient struct {
	name string
	hc   *http.Client
}

// bareAndInfermesh returns a client of base alone and one of infermesh over base.
func bareAndInfermesh(b *testing.B, base http.RoundTripper) []namedClient {
	hc, err := llmclient.NewHTTPClient(llmclient.Config{Base: base})
	if err != nil {
		b.Fatal(err)
	}
	return []namedClient{{"bare", &http.Client{Transport: base}}, {"infermesh", hc}}
}

// BenchmarkRoundTrip is one go-openai call through a Base transport that
// answers at once: "bare" is go-openai alone, "infermesh" the same call
// through NewHTTPClient with every layer on (route policy, breaker, deadlines,
// body checks, tracing with the global no-op provider). The difference between
// the two is infermesh's own CPU cost per call.
func BenchmarkRoundTrip(b *testing.B) { benchRoundTrip(b, false) }

// BenchmarkRoundTripCold is BenchmarkRoundTrip with the CPU caches flushed
// before each call, as they are between real requests: the kernel, the server
// and the caller's own work run in between and evict the client's code and
// data. It reports the time of the call alone as call-ns (ns/op includes the
// flush); the difference between bare and infermesh is infermesh's own cost
// when it starts cold, which is what a loopback benchmark sees.
func BenchmarkRoundTripCold(b *testing.B) { benchRoundTrip(b, true) }

// evictBuffer is larger than the last-level caches of the machines the
// benchmarks run on, so that writing one byte per cache line of it evicts
// everything else.
var evictBuffer = make([]byte, 64<<20)

func evictCaches() {
	for i := 0; i < len(evictBuffer); i += 64 {
		evictBuffer[i]++
	}
}

func benchRoundTrip(b *testing.B, cold bool) {
	for _, kind := range []string{"unary", "stream-usage"} {
		var base http.RoundTripper = llmtest.CannedChat()
		if kind != "unary" {
			base = llmtest.CannedStream()
		}
		for _, client := range bareAndInfermesh(b, base) {
			b.Run(kind+"/"+client.name, func(b *testing.B) {
				cfg := openai.DefaultConfig("sk-bench")
				cfg.BaseURL = "http://127.0.0.1:1/v1"
				cfg.HTTPClient = client.hc
				c := &caller{b: b, client: openai.NewClientWithConfig(cfg), stream: kind != "unary", req: chatReq(kind != "unary")}
				if c.stream {
					c.req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
				}
				b.ReportAllocs()
				var calls time.Duration
				for b.Loop() {
					if !cold {
						c.call()
						continue
					}
					evictCaches()
					start := time.Now()
					c.call()
					calls += time.Since(start)
				}
				if cold {
					b.ReportMetric(float64(calls.Nanoseconds())/float64(b.N), "call-ns")
				}
			})
		}
	}
}

// BenchmarkRoundTripRaw is BenchmarkRoundTrip for a caller that speaks HTTP
// itself (as meshbench's load does): a 1 KiB chat request built with
// http.NewRequest, the response body copied to io.Discard.
func BenchmarkRoundTripRaw(b *testing.B) {
	content := strings.Repeat("the quick brown fox jumps over the lazy dog ", 22)
	body := []byte(`{"max_tokens":64,"messages":[{"content":"You are a helpful assistant.","role":"system"},{"content":"` +
		content + `","role":"user"}],"model":"gpt-4o-mini"}`)
	for _, client := range bareAndInfermesh(b, llmtest.CannedChat()) {
		b.Run(client.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/v1/chat/completions", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
