package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/benchmarks/internal/load"
	"github.com/infermesh/infermesh/benchmarks/internal/payload"
	"github.com/infermesh/infermesh/benchmarks/internal/proxies"
	"github.com/infermesh/infermesh/benchmarks/internal/report"
	"github.com/infermesh/infermesh/benchmarks/internal/upstream"
)

const helperEnv = "MESHBENCH_HARNESS_TEST_UPSTREAM"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := upstream.Serve(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func upstreamCommand() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	return cmd
}

func TestPlanFull(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cases, skipped := Plan(cfg, []proxies.Kind{proxies.HAProxy, proxies.Nginx})
	count := map[string]int{}
	for _, c := range cases {
		count[c.Section]++
	}
	// hops: http1 5 paths x 3 clients x 3 conc = 45; h2c 3 paths (no nginx) x 3 x 3 = 27;
	// grpc 5 x 2 x 3 = 30.
	if count[report.SectionHops] != 102 {
		t.Errorf("%d hops cases, want 102", count[report.SectionHops])
	}
	// payloads: (http1 + grpc) x (direct + haproxy 1 hop) x 3 payloads x (2 + 3 codings) = 60.
	if count[report.SectionPayloads] != 60 {
		t.Errorf("%d payload cases, want 60", count[report.SectionPayloads])
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "h2c over nginx") {
		t.Errorf("skipped %v", skipped)
	}
	// Cases of one path are adjacent, so each chain starts once.
	seen := map[string]bool{}
	for i, c := range cases {
		k := c.Section + string(c.Protocol) + string(c.Proxy) + c.Topology()
		if i > 0 && samePath(cases[i-1], c) && cases[i-1].Section == c.Section {
			continue
		}
		if seen[k] {
			t.Errorf("path %s %s %s appears twice, not adjacent", c.Section, c.Protocol, c.Topology())
		}
		seen[k] = true
	}
	for _, c := range cases {
		if (c.Client == load.Stdlib || c.Client == load.GRPCDefault) && c.Compression == load.Zstd {
			t.Errorf("plain client with zstd: %s", c)
		}
		if c.Proxy == proxies.Nginx && c.Protocol == proxies.H2C {
			t.Errorf("nginx h2c planned: %s", c)
		}
	}
}

func TestPlanQuickAndDirectOnly(t *testing.T) {
	t.Parallel()
	cases, _ := Plan(QuickConfig(), []proxies.Kind{proxies.HAProxy, proxies.Nginx})
	// hops: (5 + 3 + 5 paths) x clients (3, 3, 2) x 1 conc = 15 + 9 + 10 = 34;
	// payloads direct only: 2 payloads x (http1: stdlib none, transport none+zstd; grpc: the same) = 12.
	if len(cases) != 46 {
		t.Errorf("%d quick cases, want 46", len(cases))
	}
	for _, c := range cases {
		if c.Section == report.SectionPayloads && c.Hops != 0 {
			t.Errorf("quick payload case through a proxy: %s", c)
		}
	}
	direct, skipped := Plan(QuickConfig(), nil)
	if len(direct) != 8+12 || len(skipped) != 0 {
		t.Errorf("direct only: %d cases (%v skipped), want 20", len(direct), skipped)
	}
}

// TestRunDirect runs the harness end to end on the direct path with tiny bounds: the
// upstream is a real child process, every protocol and client runs, and the outputs are
// written.
func TestRunDirect(t *testing.T) {
	cfg := Config{
		MaxRequests: 30, Duration: 4 * time.Second, WarmupPerWorker: 2, Rounds: 2, Concurrency: []int{2},
		Protocols:    []proxies.Protocol{proxies.HTTP1, proxies.H2C, proxies.GRPC},
		MaxHops:      2,
		Payloads:     []payload.Kind{payload.KindChat}, // small: the race detector slows compression a lot
		Compressions: []load.Compression{load.None, load.Zstd}, PayloadConcurrency: 1,
		PayloadProtocols: []proxies.Protocol{proxies.HTTP1, proxies.GRPC},
		UpstreamCommand:  upstreamCommand,
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 8+6 {
		t.Fatalf("%d runs, want 14", len(rep.Runs))
	}
	for _, r := range rep.Runs {
		if r.Errors != 0 || r.Requests != 30 || r.P50 <= 0 || r.P50 > r.P99 || r.RPS <= 0 {
			t.Errorf("%s %s %s: %d requests, %d errors (%s), p50 %v p99 %v", r.Protocol, r.Topology(), r.Client, r.Requests, r.Errors, r.FirstError, r.P50, r.P99)
		}
		if r.CPU.Client <= 0 || r.CPU.Upstream < 0 || len(r.CPU.Proxies) != 0 {
			t.Errorf("%s %s: CPU %+v", r.Protocol, r.Client, r.CPU)
		}
		if r.Client != string(load.Stdlib) && (r.NewConns.Client > 2 || r.NewConns.Upstream > 2) {
			t.Errorf("%s %s: new conns %+v", r.Protocol, r.Client, r.NewConns)
		}
	}
	dir := t.TempDir()
	files, err := Write(rep, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Errorf("wrote %v", files)
	}
	md, _ := os.ReadFile(filepath.Join(dir, FileMarkdown))
	if !strings.Contains(string(md), "| grpc | direct | grpcinfer | 2 |") || !strings.Contains(string(md), "(latency.svg)") {
		t.Errorf("markdown:\n%s", md)
	}
	js, _ := os.ReadFile(filepath.Join(dir, FileJSON))
	if back, err := report.Parse(js); err != nil || len(back.Runs) != len(rep.Runs) {
		t.Errorf("JSON does not parse back: %v", err)
	}
}

// TestRunThroughProxies runs one short case per installed proxy, one and two hops, HTTP/1.1
// and gRPC, and checks that CPU is charged to each proxy and that the proxies reuse their
// upstream connections.
func TestRunThroughProxies(t *testing.T) {
	var kinds []proxies.Kind
	for _, k := range []proxies.Kind{proxies.HAProxy, proxies.Nginx} {
		if _, err := proxies.Find(k); err == nil {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		t.Skip("no proxy installed (apt-get install haproxy nginx)")
	}
	cfg := Config{
		MaxRequests: 200, Duration: 2 * time.Second, WarmupPerWorker: 3, Concurrency: []int{2},
		Protocols: []proxies.Protocol{proxies.HTTP1, proxies.GRPC}, Proxies: kinds, MaxHops: 2,
		UpstreamCommand: upstreamCommand,
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	hops := 0
	for _, r := range rep.Runs {
		if r.Errors != 0 || r.Requests != 200 {
			t.Errorf("%s %s %s: %d requests, %d errors (%s)", r.Protocol, r.Topology(), r.Client, r.Requests, r.Errors, r.FirstError)
		}
		if len(r.CPU.Proxies) != r.Hops {
			t.Errorf("%s %s: CPU of %d proxies for %d hops", r.Protocol, r.Topology(), len(r.CPU.Proxies), r.Hops)
		}
		if r.Hops > 0 {
			hops++
			// The proxy's pool may still grow to the concurrency; it never churns.
			if r.NewConns.Upstream > int64(r.Concurrency) {
				t.Errorf("%s %s %s: upstream accepted %d connections in the measured phase", r.Protocol, r.Topology(), r.Client, r.NewConns.Upstream)
			}
		}
	}
	if hops == 0 {
		t.Error("no run through a proxy")
	}
	if len(rep.Machine.Proxies) != len(kinds) {
		t.Errorf("proxy versions %v", rep.Machine.Proxies)
	}
}

func TestRunRejectsConfig(t *testing.T) {
	t.Parallel()
	if _, err := Run(context.Background(), Config{}); err == nil || !strings.Contains(err.Error(), "UpstreamCommand") {
		t.Errorf("err = %v", err)
	}
	if _, err := Run(context.Background(), Config{UpstreamCommand: upstreamCommand, MaxHops: 3}); err == nil || !strings.Contains(err.Error(), "MaxHops") {
		t.Errorf("err = %v", err)
	}
}
