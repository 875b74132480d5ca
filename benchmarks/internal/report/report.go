package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Sections of a report.
const (
	// SectionHops compares topologies, protocols, clients and concurrencies with the small
	// chat payload and no compression.
	SectionHops = "hops"
	// SectionPayloads compares payload sizes and request compression.
	SectionPayloads = "payloads"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPU     string            `json:"cpu"`
	Cores   int               `json:"cores"`
	Go      string            `json:"go"`
	Kernel  string            `json:"kernel,omitempty"`
	Proxies map[string]string `json:"proxies,omitempty"` // kind -> version
}

// Settings are the bounds of every run.
type Settings struct {
	Quick           bool    `json:"quick"`
	MaxRequests     int     `json:"max_requests"`
	DurationSeconds float64 `json:"duration_seconds"`
	WarmupPerWorker int     `json:"warmup_per_worker"`
	Rounds          int     `json:"rounds"`
	Concurrency     []int   `json:"concurrency"`
}

// CPU is CPU time per successful request, in microseconds, of each process on the path.
type CPU struct {
	Client   float64   `json:"client"`
	Proxies  []float64 `json:"proxies,omitempty"` // client-side hop first
	Upstream float64   `json:"upstream"`
}

// Total returns the CPU per request of all processes together.
func (c CPU) Total() float64 {
	t := c.Client + c.Upstream
	for _, p := range c.Proxies {
		t += p
	}
	return t
}

// Conns counts new connections opened during the measured phase.
type Conns struct {
	// Client: connections the client dialled.
	Client int64 `json:"client"`
	// Upstream: connections the upstream accepted.
	Upstream int64 `json:"upstream"`
}

// Run is one measured run.
type Run struct {
	Section     string  `json:"section"`
	Protocol    string  `json:"protocol"`
	Proxy       string  `json:"proxy,omitempty"`
	Hops        int     `json:"hops"`
	Client      string  `json:"client"`
	Concurrency int     `json:"concurrency"`
	Payload     string  `json:"payload"`
	Compression string  `json:"compression"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	RPS         float64 `json:"rps"`
	P50         float64 `json:"p50_us"`
	P90         float64 `json:"p90_us"`
	P99         float64 `json:"p99_us"`
	P999        float64 `json:"p99_9_us"`
	Max         float64 `json:"max_us"`
	CPU         CPU     `json:"cpu_us_per_req"`
	NewConns    Conns   `json:"new_conns"`
}

// Topology names the path: "direct", or "<proxy> 1 hop", "<proxy> 2 hops".
func (r Run) Topology() string { return Topology(r.Proxy, r.Hops) }

// Topology names a path through hops proxies of the given kind.
func Topology(proxy string, hops int) string {
	switch {
	case hops == 0:
		return "direct"
	case hops == 1:
		return proxy + " 1 hop"
	default:
		return fmt.Sprintf("%s %d hops", proxy, hops)
	}
}

// SetLatency fills the percentiles and maximum from h (microseconds).
func (r *Run) SetLatency(h *hdrhistogram.Histogram) {
	if h.TotalCount() == 0 {
		return
	}
	r.P50 = float64(h.ValueAtQuantile(50))
	r.P90 = float64(h.ValueAtQuantile(90))
	r.P99 = float64(h.ValueAtQuantile(99))
	r.P999 = float64(h.ValueAtQuantile(99.9))
	r.Max = float64(h.Max())
}

// Report is a whole benchmark.
type Report struct {
	Machine  Machine  `json:"machine"`
	Settings Settings `json:"settings"`
	// Skipped says what was left out and why (a missing proxy, an unsupported protocol).
	Skipped []string `json:"skipped,omitempty"`
	Runs    []Run    `json:"runs"`
}

// JSON renders r as indented JSON.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Parse reads a report written by JSON.
func Parse(b []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DetectMachine describes this machine (proxy versions are added by the caller).
func DetectMachine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), Go: runtime.Version(), Proxies: map[string]string{}}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

// Errors returns the runs that had failed requests.
func (r *Report) Errors() []Run {
	var out []Run
	for _, run := range r.Runs {
		if run.Errors > 0 {
			out = append(out, run)
		}
	}
	return out
}

// key identifies a run for lookups.
type key struct {
	section, protocol, proxy string
	hops                     int
	client                   string
	conc                     int
	payload, comp            string
}

func (r *Report) index() map[key]Run {
	m := make(map[key]Run, len(r.Runs))
	for _, run := range r.Runs {
		m[key{run.Section, run.Protocol, run.Proxy, run.Hops, run.Client, run.Concurrency, run.Payload, run.Compression}] = run
	}
	return m
}

// find returns the hops-section run for the given coordinates.
func find(idx map[key]Run, protocol, proxy string, hops int, client string, conc int, payload string) (Run, bool) {
	if hops == 0 {
		proxy = ""
	}
	run, ok := idx[key{SectionHops, protocol, proxy, hops, client, conc, payload, "none"}]
	return run, ok && run.Requests > 0
}

// us formats a latency in µs for a table cell ("-" when not measured).
func us(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

func cpuCell(c CPU) string {
	parts := []string{fmt.Sprintf("%.0f", c.Client)}
	for _, p := range c.Proxies {
		parts = append(parts, fmt.Sprintf("%.0f", p))
	}
	parts = append(parts, fmt.Sprintf("%.0f", c.Upstream))
	return strings.Join(parts, " / ")
}

func pct(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", v*100)
}

// Table renders the runs of one section as a markdown table.
func (r *Report) Table(section string) string {
	var b strings.Builder
	payloadCols := section == SectionPayloads
	if payloadCols {
		b.WriteString("| protocol | topology | client | payload | compression | conc | req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | CPU µs/req client / proxies / upstream | new conns client / upstream | errors |\n")
		b.WriteString("|---|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	} else {
		b.WriteString("| protocol | topology | client | conc | req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | CPU µs/req client / proxies / upstream | new conns client / upstream | errors |\n")
		b.WriteString("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	}
	for _, run := range r.Runs {
		if run.Section != section {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | ", run.Protocol, run.Topology(), run.Client)
		if payloadCols {
			fmt.Fprintf(&b, "%s | %s | ", run.Payload, run.Compression)
		}
		fmt.Fprintf(&b, "%d | %.0f | %s | %s | %s | %s | %s | %d / %d | %d |\n",
			run.Concurrency, run.RPS, us(run.P50), us(run.P90), us(run.P99), us(run.P999),
			cpuCell(run.CPU), run.NewConns.Client, run.NewConns.Upstream, run.Errors)
	}
	return b.String()
}

// HopCost is the latency one path adds over the direct path, for one protocol, client and
// concurrency.
type HopCost struct {
	Protocol, Proxy, Client string
	Concurrency             int
	DirectP50, DirectP99    float64
	// OneHopP50/P99 and TwoHopsP50/P99 are the added latencies (µs) over direct.
	OneHopP50, OneHopP99, TwoHopsP50, TwoHopsP99 float64
	HasTwo                                       bool
}

// HopCosts computes the per-hop cost of every proxy for every protocol, client and
// concurrency of the hops section, from the chat payload runs.
func (r *Report) HopCosts() []HopCost {
	idx := r.index()
	var out []HopCost
	seen := map[string]bool{}
	for _, run := range r.Runs {
		if run.Section != SectionHops || run.Hops != 1 {
			continue
		}
		k := fmt.Sprintf("%s|%s|%s|%d", run.Protocol, run.Proxy, run.Client, run.Concurrency)
		if seen[k] {
			continue
		}
		seen[k] = true
		d, ok := find(idx, run.Protocol, "", 0, run.Client, run.Concurrency, run.Payload)
		one, ok1 := find(idx, run.Protocol, run.Proxy, 1, run.Client, run.Concurrency, run.Payload)
		if !ok || !ok1 {
			continue
		}
		hc := HopCost{Protocol: run.Protocol, Proxy: run.Proxy, Client: run.Client, Concurrency: run.Concurrency,
			DirectP50: d.P50, DirectP99: d.P99, OneHopP50: one.P50 - d.P50, OneHopP99: one.P99 - d.P99}
		if two, ok2 := find(idx, run.Protocol, run.Proxy, 2, run.Client, run.Concurrency, run.Payload); ok2 {
			hc.HasTwo, hc.TwoHopsP50, hc.TwoHopsP99 = true, two.P50-d.P50, two.P99-d.P99
		}
		out = append(out, hc)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Protocol != b.Protocol {
			return protoOrder(a.Protocol) < protoOrder(b.Protocol)
		}
		if a.Proxy != b.Proxy {
			return a.Proxy < b.Proxy
		}
		if a.Client != b.Client {
			return a.Client < b.Client
		}
		return a.Concurrency < b.Concurrency
	})
	return out
}

func protoOrder(p string) int {
	switch p {
	case "http1":
		return 0
	case "h2c":
		return 1
	case "grpc":
		return 2
	}
	return 3
}

// Overhead is infermesh's own cost (the full client stack over the bare tuned client, on the
// same path) against the cost of one hop.
type Overhead struct {
	Protocol, Topology string
	Stack, Base        string // clients compared: Stack over Base
	Concurrency        int
	BaseP50, StackP50  float64
	// Added is StackP50 - BaseP50 in µs; AddedFrac is Added / BaseP50.
	Added, AddedFrac float64
	// HopP50 is what one hop of the same proxy adds to Base's p50 (0 for the direct path);
	// FracOfHop is Added / HopP50.
	HopP50, FracOfHop float64
}

// Overheads compares infermesh's full client stack with the bare tuned client of the same
// protocol on every path of the hops section: llmclient over the transport preset for
// HTTP, grpcinfer over plain grpc-go for gRPC.
func (r *Report) Overheads() []Overhead {
	idx := r.index()
	var out []Overhead
	for _, run := range r.Runs {
		if run.Section != SectionHops {
			continue
		}
		var base string
		switch run.Client {
		case "infermesh-llmclient":
			base = "infermesh-transport"
		case "grpcinfer":
			base = "grpc-default"
		default:
			continue
		}
		b, ok := find(idx, run.Protocol, run.Proxy, run.Hops, base, run.Concurrency, run.Payload)
		if !ok || run.Requests == 0 {
			continue
		}
		o := Overhead{Protocol: run.Protocol, Topology: run.Topology(), Stack: run.Client, Base: base,
			Concurrency: run.Concurrency, BaseP50: b.P50, StackP50: run.P50,
			Added: run.P50 - b.P50, AddedFrac: (run.P50 - b.P50) / b.P50, FracOfHop: math.NaN()}
		if run.Hops == 1 {
			if d, ok := find(idx, run.Protocol, "", 0, base, run.Concurrency, run.Payload); ok {
				o.HopP50 = b.P50 - d.P50
				o.FracOfHop = o.Added / o.HopP50
			}
		}
		out = append(out, o)
	}
	return out
}

// BudgetFracOfHop is the project's latency budget for llmclient: through one proxy hop at
// the same protocol, what it adds to the transport preset's p50 is at most this fraction of
// what the hop adds over the direct path.
const BudgetFracOfHop = 0.25

// Goal is one stated goal, checked against the runs.
type Goal struct {
	Name   string
	Met    bool
	Detail string
}

// Goals checks the harness's goals:
//   - infermesh llmclient through one sidecar hop adds less than 5% p50 over the bare tuned
//     client (the transport preset) through the same hop (HTTP/1.1, every proxy and
//     concurrency);
//   - the project's latency budget: what llmclient adds there is at most BudgetFracOfHop of
//     what the hop itself adds to the transport preset's p50 over the direct path;
//   - at concurrency 64 the infermesh transport beats the stdlib default client on p99 and
//     on req/s (HTTP/1.1, where the pool size matters; every path measured at 64).
func (r *Report) Goals() []Goal {
	idx := r.index()
	var out []Goal
	for _, o := range r.Overheads() {
		if o.Stack != "infermesh-llmclient" || !strings.HasSuffix(o.Topology, " 1 hop") || o.Protocol != "http1" {
			continue
		}
		out = append(out, Goal{
			Name:   fmt.Sprintf("llmclient adds < 5%% p50 over transport, %s %s c=%d", o.Protocol, o.Topology, o.Concurrency),
			Met:    o.AddedFrac < 0.05,
			Detail: fmt.Sprintf("p50 %s -> %s µs (%s)", us(o.BaseP50), us(o.StackP50), pct(o.AddedFrac)),
		})
		if !math.IsNaN(o.FracOfHop) {
			out = append(out, Goal{
				Name: fmt.Sprintf("llmclient adds <= %.2f of one hop's p50, %s %s c=%d", BudgetFracOfHop, o.Protocol, o.Topology, o.Concurrency),
				Met:  o.FracOfHop <= BudgetFracOfHop,
				Detail: fmt.Sprintf("llmclient %+.0f µs over transport through the hop, the hop %+.0f µs over direct: %.2f",
					o.Added, o.HopP50, o.FracOfHop),
			})
		}
	}
	for _, run := range r.Runs {
		if run.Section != SectionHops || run.Client != "infermesh-transport" || run.Concurrency != 64 || run.Protocol != "http1" {
			continue
		}
		std, ok := find(idx, run.Protocol, run.Proxy, run.Hops, "stdlib", 64, run.Payload)
		if !ok || run.Requests == 0 {
			continue
		}
		out = append(out, Goal{
			Name: fmt.Sprintf("transport beats stdlib at c=64 on p99 and req/s, %s %s", run.Protocol, run.Topology()),
			Met:  run.P99 < std.P99 && run.RPS > std.RPS,
			Detail: fmt.Sprintf("p99 %s vs %s µs, %.0f vs %.0f req/s, new conns %d vs %d (transport vs stdlib)",
				us(run.P99), us(std.P99), run.RPS, std.RPS, run.NewConns.Client, std.NewConns.Client),
		})
	}
	return out
}

// Markdown renders the whole report.
func (r *Report) Markdown(chartFile string) string {
	var b bytes.Buffer
	m := r.Machine
	fmt.Fprintf(&b, "# meshbench results\n\n")
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s", m.CPU, m.Cores, m.Go)
	if m.Kernel != "" {
		fmt.Fprintf(&b, ", %s", m.Kernel)
	}
	kinds := make([]string, 0, len(m.Proxies))
	for k := range m.Proxies {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, ", %s", m.Proxies[k])
	}
	s := r.Settings
	fmt.Fprintf(&b, ". All traffic on 127.0.0.1.\n\nEach run: at most %d requests and %v, in %d round(s) interleaved with the other clients of the same path, each after a warm-up of %d requests per worker; mode %s.\n",
		s.MaxRequests, time.Duration(s.DurationSeconds*float64(time.Second)), max(s.Rounds, 1), s.WarmupPerWorker, map[bool]string{true: "quick", false: "full"}[s.Quick])
	fmt.Fprintf(&b, "Latency in µs from HDR histograms. CPU is per successful request, from /proc (client: the benchmark process itself, so it includes the load generator).\n\n")
	if len(r.Skipped) > 0 {
		b.WriteString("Skipped:\n\n")
		for _, sk := range r.Skipped {
			fmt.Fprintf(&b, "- %s\n", sk)
		}
		b.WriteString("\n")
	}
	if chartFile != "" {
		fmt.Fprintf(&b, "![latency percentiles by topology and protocol](%s)\n\n", chartFile)
	}
	b.WriteString("## Topologies, protocols, clients (chat payload, no compression)\n\n")
	b.WriteString(r.Table(SectionHops))
	if hasSection(r, SectionPayloads) {
		b.WriteString("\n## Payloads and compression\n\n")
		b.WriteString(r.Table(SectionPayloads))
	}
	if hc := r.HopCosts(); len(hc) > 0 {
		b.WriteString("\n## Per-hop cost (added latency over direct, µs)\n\n")
		b.WriteString("| protocol | proxy | client | conc | direct p50 | 1 hop +p50 | 1 hop +p99 | 2 hops +p50 | 2 hops +p99 |\n|---|---|---|--:|--:|--:|--:|--:|--:|\n")
		for _, h := range hc {
			two50, two99 := "-", "-"
			if h.HasTwo {
				two50, two99 = fmt.Sprintf("%+.0f", h.TwoHopsP50), fmt.Sprintf("%+.0f", h.TwoHopsP99)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %.0f | %+.0f | %+.0f | %s | %s |\n",
				h.Protocol, h.Proxy, h.Client, h.Concurrency, h.DirectP50, h.OneHopP50, h.OneHopP99, two50, two99)
		}
	}
	if ov := r.Overheads(); len(ov) > 0 {
		b.WriteString("\n## infermesh's own overhead (full stack over the bare tuned client, p50)\n\n")
		b.WriteString("| protocol | topology | stack over base | conc | base p50 | stack p50 | added µs | added % | fraction of one hop |\n|---|---|---|--:|--:|--:|--:|--:|--:|\n")
		for _, o := range ov {
			frac := "-"
			if !math.IsNaN(o.FracOfHop) {
				frac = fmt.Sprintf("%.2f", o.FracOfHop)
			}
			fmt.Fprintf(&b, "| %s | %s | %s over %s | %d | %.0f | %.0f | %+.0f | %s | %s |\n",
				o.Protocol, o.Topology, o.Stack, o.Base, o.Concurrency, o.BaseP50, o.StackP50, o.Added, pct(o.AddedFrac), frac)
		}
	}
	if gs := r.Goals(); len(gs) > 0 {
		b.WriteString("\n## Goals\n\n| goal | met | numbers |\n|---|---|---|\n")
		for _, g := range gs {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", g.Name, map[bool]string{true: "yes", false: "**no**"}[g.Met], g.Detail)
		}
	}
	if errs := r.Errors(); len(errs) > 0 {
		b.WriteString("\n## Errors\n\n")
		for _, e := range errs {
			fmt.Fprintf(&b, "- %s %s %s c=%d %s/%s: %d errors, first: %s\n", e.Protocol, e.Topology(), e.Client, e.Concurrency, e.Payload, e.Compression, e.Errors, e.FirstError)
		}
	}
	return b.String()
}

func hasSection(r *Report, s string) bool {
	for _, run := range r.Runs {
		if run.Section == s {
			return true
		}
	}
	return false
}
