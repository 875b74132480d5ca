// Command meshbench measures what a sidecar hop costs: the same calls go to an upstream
// process directly, through one proxy (a client-side sidecar) and through two (client-side
// and server-side sidecars, as in a mesh), over HTTP/1.1, h2c and gRPC, with the standard
// library's client, infermesh's transport preset and infermesh's llmclient (grpc-go and
// grpcinfer for gRPC), at several concurrencies, payload sizes and request codings.
//
// Usage:
//
//	go run ./cmd/meshbench            # the full matrix, a few minutes on 2 cores
//	go run ./cmd/meshbench -quick     # a reduced matrix in well under a minute (CI smoke test)
//
// The proxies are HAProxy and nginx from the OS packages (apt-get install haproxy nginx) and
// Envoy when an envoy binary is on PATH; a missing one is skipped with a message. meshbench
// writes their configuration files itself, starts every process it needs on random
// loopback ports, and stops them by process group when it ends, also on error or interrupt.
//
// Outputs, in -out (default ./meshbench-out): results.json, results.md (tables, per-hop
// costs, infermesh's own overhead, the goals) and latency.svg / latency.png (latency
// percentiles by topology and protocol).
//
// The exit status is 0 when every run completed without failed requests, 1 otherwise, and
// 2 for bad flags. A missing proxy is a skip, not a failure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/infermesh/infermesh/benchmarks/internal/harness"
	"github.com/infermesh/infermesh/benchmarks/internal/proxies"
	"github.com/infermesh/infermesh/benchmarks/internal/upstream"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		upstreamMode = fs.Bool("upstream", false, "internal: run as the upstream process")
		quick        = fs.Bool("quick", false, "reduced matrix that finishes in well under a minute (CI smoke test)")
		out          = fs.String("out", "meshbench-out", "output directory")
		requests     = fs.Int("requests", 0, "maximum measured requests per run (default 20000, quick 2000)")
		duration     = fs.Duration("duration", 0, "maximum measured time per run (default 1s, quick 250ms)")
		warmup       = fs.Int("warmup", -1, "warm-up requests per worker (default 10, quick 3)")
		rounds       = fs.Int("rounds", 0, "split each run into this many rounds interleaved with the other clients of its path (default 3, quick 1)")
		conc         = fs.String("concurrency", "", "comma-separated concurrencies of the hops section (default 1,16,64; quick 16)")
		protos       = fs.String("protocols", "", "comma-separated protocols: http1,h2c,grpc (default all)")
		proxyList    = fs.String("proxies", "", "comma-separated proxies to try: haproxy,nginx,envoy (default all; none for direct only)")
		hops         = fs.Int("hops", 2, "longest proxy chain, 0 to 2")
		payloads     = fs.Bool("payloads", true, "run the payloads and compression section")
		payloadConc  = fs.Int("payload-concurrency", 0, "concurrency of the payloads section (default 1)")
		quiet        = fs.Bool("q", false, "no progress lines")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *upstreamMode {
		// The parent closes our stdin to stop us; SIGTERM also ends us.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		if err := upstream.Serve(ctx, stdin, stdout); err != nil {
			fmt.Fprintln(stderr, "meshbench upstream:", err)
			return 1
		}
		return 0
	}

	cfg := harness.DefaultConfig()
	if *quick {
		cfg = harness.QuickConfig()
	}
	if *requests > 0 {
		cfg.MaxRequests = *requests
	}
	if *duration > 0 {
		cfg.Duration = *duration
	}
	if *warmup >= 0 {
		cfg.WarmupPerWorker = *warmup
	}
	if *rounds > 0 {
		cfg.Rounds = *rounds
	}
	if *conc != "" {
		cs, err := parseInts(*conc)
		if err != nil {
			fmt.Fprintln(stderr, "meshbench: -concurrency:", err)
			return 2
		}
		cfg.Concurrency = cs
	}
	if *protos != "" {
		cfg.Protocols = nil
		for _, p := range strings.Split(*protos, ",") {
			switch pr := proxies.Protocol(strings.TrimSpace(p)); pr {
			case proxies.HTTP1, proxies.H2C, proxies.GRPC:
				cfg.Protocols = append(cfg.Protocols, pr)
			default:
				fmt.Fprintf(stderr, "meshbench: -protocols: unknown protocol %q\n", p)
				return 2
			}
		}
	}
	if *proxyList != "" {
		cfg.Proxies = nil
		for _, p := range strings.Split(*proxyList, ",") {
			switch k := proxies.Kind(strings.TrimSpace(p)); k {
			case proxies.HAProxy, proxies.Nginx, proxies.Envoy:
				cfg.Proxies = append(cfg.Proxies, k)
			case "none":
			default:
				fmt.Fprintf(stderr, "meshbench: -proxies: unknown proxy %q\n", p)
				return 2
			}
		}
	}
	if *hops < 0 || *hops > 2 {
		fmt.Fprintln(stderr, "meshbench: -hops must be 0, 1 or 2")
		return 2
	}
	cfg.MaxHops = *hops
	if !*payloads {
		cfg.Payloads = nil
	}
	if *payloadConc > 0 {
		cfg.PayloadConcurrency = *payloadConc
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "meshbench:", err)
		return 1
	}
	cfg.UpstreamCommand = func() *exec.Cmd { return exec.Command(exe, "-upstream") }
	if !*quiet {
		cfg.Log = stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	rep, runErr := harness.Run(ctx, cfg)
	code := 0
	if rep != nil {
		files, err := harness.Write(rep, *out)
		for _, f := range files {
			fmt.Fprintln(stdout, "wrote", f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "meshbench:", err)
			code = 1
		}
		for _, s := range rep.Skipped {
			fmt.Fprintln(stdout, "skipped:", s)
		}
		if bad := rep.Errors(); len(bad) > 0 {
			for _, r := range bad {
				fmt.Fprintf(stderr, "meshbench: %s %s %s c=%d: %d failed requests, first: %s\n",
					r.Protocol, r.Topology(), r.Client, r.Concurrency, r.Errors, r.FirstError)
			}
			code = 1
		}
		fmt.Fprintf(stdout, "%d runs in %.1fs\n", len(rep.Runs), time.Since(start).Seconds())
	}
	if runErr != nil {
		fmt.Fprintln(stderr, "meshbench:", runErr)
		code = 1
	}
	return code
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad value %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}
