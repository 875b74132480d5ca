package report

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func run(proto, proxy string, hops int, client string, conc int, p50, p99, rps float64) Run {
	return Run{Section: SectionHops, Protocol: proto, Proxy: proxy, Hops: hops, Client: client, Concurrency: conc,
		Payload: "chat-1KiB", Compression: "none", Requests: 1000, Seconds: 1, RPS: rps,
		P50: p50, P90: p50 * 1.5, P99: p99, P999: p99 * 2, Max: p99 * 3,
		CPU: CPU{Client: 40, Upstream: 30}}
}

func sample() *Report {
	r := &Report{
		Machine:  Machine{CPU: "Test CPU", Cores: 2, Go: "go1.26", Proxies: map[string]string{"haproxy": "HAProxy version 2.6"}},
		Settings: Settings{MaxRequests: 100, DurationSeconds: 0.5, WarmupPerWorker: 2, Concurrency: []int{1, 64}},
		Skipped:  []string{"envoy: not installed"},
	}
	r.Runs = []Run{
		run("http1", "", 0, "stdlib", 1, 200, 400, 5000),
		run("http1", "", 0, "infermesh-transport", 1, 190, 380, 5200),
		run("http1", "", 0, "infermesh-llmclient", 1, 200, 390, 5000),
		run("http1", "haproxy", 1, "infermesh-transport", 1, 390, 700, 2500),
		run("http1", "haproxy", 1, "infermesh-llmclient", 1, 400, 720, 2400),
		run("http1", "haproxy", 2, "infermesh-transport", 1, 600, 1000, 1600),
		run("http1", "haproxy", 1, "stdlib", 64, 3000, 9000, 9000),
		run("http1", "haproxy", 1, "infermesh-transport", 64, 2500, 5000, 11000),
		run("http1", "haproxy", 1, "infermesh-llmclient", 64, 3000, 6000, 10000),
		run("http1", "", 0, "infermesh-transport", 64, 2000, 4000, 14000),
		run("grpc", "", 0, "grpcinfer", 1, 300, 500, 3000),
	}
	r.Runs[3].CPU.Proxies = []float64{25}
	r.Runs[5].CPU.Proxies = []float64{25, 26}
	r.Runs = append(r.Runs, Run{Section: SectionPayloads, Protocol: "http1", Client: "infermesh-transport", Concurrency: 1,
		Payload: "tensor-4MiB", Compression: "zstd", Requests: 10, RPS: 100, P50: 9000, P99: 12000, Errors: 2, FirstError: "status 502"})
	return r
}

func TestHopCosts(t *testing.T) {
	t.Parallel()
	hc := sample().HopCosts()
	var got *HopCost
	for i := range hc {
		if hc[i].Client == "infermesh-transport" && hc[i].Concurrency == 1 {
			got = &hc[i]
		}
	}
	if got == nil {
		t.Fatalf("no hop cost for the transport at c=1: %+v", hc)
	}
	if got.OneHopP50 != 200 || got.OneHopP99 != 320 || !got.HasTwo || got.TwoHopsP50 != 410 || got.TwoHopsP99 != 620 {
		t.Errorf("hop cost %+v", *got)
	}
}

func TestOverheadsAndGoals(t *testing.T) {
	t.Parallel()
	r := sample()
	var oneHop *Overhead
	for _, o := range r.Overheads() {
		if o.Topology == "haproxy 1 hop" && o.Concurrency == 1 {
			oneHop = &o
		}
	}
	if oneHop == nil {
		t.Fatal("no 1-hop overhead at c=1")
	}
	// llmclient 400 over transport 390 through the hop; the hop adds 390-190 = 200.
	if oneHop.Added != 10 || math.Abs(oneHop.AddedFrac-10.0/390) > 1e-9 || oneHop.HopP50 != 200 || oneHop.FracOfHop != 0.05 {
		t.Errorf("overhead %+v", *oneHop)
	}
	met := map[string]bool{}
	for _, g := range r.Goals() {
		met[g.Name] = g.Met
	}
	want := map[string]bool{
		"llmclient adds < 5% p50 over transport, http1 haproxy 1 hop c=1":      true,  // +2.6%
		"llmclient adds < 5% p50 over transport, http1 haproxy 1 hop c=64":     false, // +20%
		"llmclient adds <= 0.25 of one hop's p50, http1 haproxy 1 hop c=1":     true,  // 10 of 200
		"llmclient adds <= 0.25 of one hop's p50, http1 haproxy 1 hop c=64":    false, // 500 of 500
		"transport beats stdlib at c=64 on p99 and req/s, http1 haproxy 1 hop": true,
	}
	for name, w := range want {
		if got, ok := met[name]; !ok || got != w {
			t.Errorf("goal %q: met=%v (present %v), want %v; all: %v", name, got, ok, w, met)
		}
	}
	if _, ok := met["transport beats stdlib at c=64 on p99 and req/s, http1 direct"]; ok {
		t.Error("a goal without a stdlib run to compare with")
	}
}

func TestMarkdownAndJSON(t *testing.T) {
	t.Parallel()
	r := sample()
	md := r.Markdown("latency.svg")
	for _, want := range []string{
		"Test CPU, 2 cores, go1.26", "HAProxy version 2.6", "at most 100 requests and 500ms, in 1 round(s)",
		"- envoy: not installed", "![latency percentiles by topology and protocol](latency.svg)",
		"| http1 | haproxy 1 hop | infermesh-transport | 1 | 2500 | 390 | 585 | 700 | 1400 | 40 / 25 / 30 | 0 / 0 | 0 |",
		"| http1 | haproxy 2 hops | infermesh-transport | 1 | 1600 | 600 | 900 | 1000 | 2000 | 40 / 25 / 26 / 30 |",
		"## Payloads and compression", "| tensor-4MiB | zstd | 1 | 100 | 9000 |",
		"## Per-hop cost", "| http1 | haproxy | infermesh-transport | 1 | 190 | +200 | +320 | +410 | +620 |",
		"## infermesh's own overhead", "| +10 | +2.6% | 0.05 |",
		"## Goals", "| **no** |", "## Errors", "2 errors, first: status 502",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	b, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != len(r.Runs) || back.Runs[5].CPU.Proxies[1] != 26 || back.Machine.CPU != "Test CPU" || back.Runs[11].FirstError != "status 502" {
		t.Errorf("JSON round trip lost data: %s", b)
	}
	if !bytes.Contains(b, []byte(`"p99_9_us": 800`)) {
		t.Errorf("JSON lacks the p99.9 field: %s", b)
	}
	if len(r.Errors()) != 1 {
		t.Errorf("Errors() = %d runs, want 1", len(r.Errors()))
	}
}

func TestSetLatency(t *testing.T) {
	t.Parallel()
	h := hdrhistogram.New(1, 60_000_000, 3)
	for v := int64(1); v <= 1000; v++ {
		_ = h.RecordValue(v * 10) // 10 µs .. 10 ms
	}
	var r Run
	r.SetLatency(h)
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.002 }
	if !near(r.P50, 5000) || !near(r.P90, 9000) || !near(r.P99, 9900) || !near(r.P999, 9990) || !near(r.Max, 10000) {
		t.Errorf("percentiles %+v", r)
	}
	var empty Run
	empty.SetLatency(hdrhistogram.New(1, 10, 1))
	if empty.P50 != 0 {
		t.Error("empty histogram gave a percentile")
	}
}

func TestChart(t *testing.T) {
	t.Parallel()
	r := sample()
	if c := r.ChartConcurrency(); c != 1 {
		t.Errorf("ChartConcurrency = %d, want 1 (no run at 16)", c)
	}
	topos, protos, panels := r.chartData(1)
	if strings.Join(topos, ",") != "direct,haproxy 1 hop,haproxy 2 hops" || strings.Join(protos, ",") != "http1,grpc" {
		t.Errorf("topologies %v, protocols %v", topos, protos)
	}
	if panels[0][0][1] != 390 || panels[2][0][2] != 1000 || panels[0][1][0] != 300 || panels[0][1][1] != 0 {
		t.Errorf("panels %v", panels)
	}
	var svg, png bytes.Buffer
	if err := r.Chart(&svg, "svg"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(svg.Bytes(), []byte("<svg")) || !bytes.Contains(svg.Bytes(), []byte("p99.9 latency")) {
		t.Errorf("SVG lacks its parts (%d bytes)", svg.Len())
	}
	if err := r.Chart(&png, "png"); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png.Bytes(), []byte("\x89PNG\r\n\x1a\n")) {
		t.Error("PNG lacks its signature")
	}
	if err := r.Chart(&png, "gif"); err == nil {
		t.Error("gif: want an error")
	}
	if (&Report{}).CanChart() {
		t.Error("empty report: CanChart")
	}
	if err := (&Report{}).Chart(&png, "svg"); err == nil {
		t.Error("empty report: want an error")
	}
}
