package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/infermesh/infermesh/benchmarks/internal/load"
	"github.com/infermesh/infermesh/benchmarks/internal/proc"
	"github.com/infermesh/infermesh/benchmarks/internal/procstat"
	"github.com/infermesh/infermesh/benchmarks/internal/proxies"
	"github.com/infermesh/infermesh/benchmarks/internal/report"
	"github.com/infermesh/infermesh/benchmarks/internal/upstream"
)

// Run runs the benchmark cfg describes and returns its report. Proxies that are not
// installed are skipped (listed in Report.Skipped), never an error. The error reports
// real failures: the upstream or a proxy chain that would not start, a run whose client
// could not be built or whose warm-up failed, or ctx ending; the report then holds the runs
// that completed. Every process the harness starts is stopped before Run returns.
func Run(ctx context.Context, cfg Config) (*report.Report, error) {
	if cfg.UpstreamCommand == nil {
		return nil, errors.New("harness: Config.UpstreamCommand is nil")
	}
	if cfg.MaxHops < 0 || cfg.MaxHops > 2 {
		return nil, fmt.Errorf("harness: Config.MaxHops %d, want 0, 1 or 2", cfg.MaxHops)
	}
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	rep := &report.Report{
		Machine: report.DetectMachine(),
		Settings: report.Settings{Quick: cfg.Quick, MaxRequests: cfg.MaxRequests, DurationSeconds: cfg.Duration.Seconds(),
			WarmupPerWorker: cfg.WarmupPerWorker, Rounds: max(cfg.Rounds, 1), Concurrency: cfg.Concurrency},
	}
	bins := map[proxies.Kind]string{}
	var found []proxies.Kind
	for _, k := range cfg.Proxies {
		bin, err := proxies.Find(k)
		if err != nil {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s: not installed; to include it: %s", k, k.InstallHint()))
			fmt.Fprintf(logw, "meshbench: skipping %s: not installed (%s)\n", k, k.InstallHint())
			continue
		}
		bins[k] = bin
		found = append(found, k)
		rep.Machine.Proxies[string(k)] = proxies.Version(ctx, k, bin)
	}
	cases, skipped := Plan(cfg, found)
	rep.Skipped = append(rep.Skipped, skipped...)

	dir, err := os.MkdirTemp("", "meshbench-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)

	up, err := upstream.Start(ctx, cfg.UpstreamCommand())
	if err != nil {
		return rep, err
	}
	defer up.Stop()

	var errs []error
	fmt.Fprintf(logw, "meshbench: %d runs, each at most %d requests and %v\n", len(cases), cfg.MaxRequests, cfg.Duration)
	for i := 0; i < len(cases); {
		// The cases of one path are adjacent: start its chain once.
		j := i
		for j < len(cases) && samePath(cases[i], cases[j]) {
			j++
		}
		if err := runPath(ctx, cfg, rep, up, bins, dir, cases[i:j], i, len(cases), logw); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		i = j
	}
	if up.Proc.Exited() {
		errs = append(errs, fmt.Errorf("upstream exited during the benchmark; stderr: %s", up.Proc.Stderr()))
	}
	return rep, errors.Join(errs...)
}

func samePath(a, b Case) bool {
	return a.Protocol == b.Protocol && a.Proxy == b.Proxy && a.Hops == b.Hops
}

// runPath starts the proxy chain of cases[0]'s path, runs every case, and stops the chain.
func runPath(ctx context.Context, cfg Config, rep *report.Report, up *upstream.Handle, bins map[proxies.Kind]string,
	dir string, cases []Case, done, total int, logw io.Writer) error {
	c0 := cases[0]
	target := up.HTTPAddr
	if c0.Protocol == proxies.GRPC {
		target = up.GRPCAddr
	}
	var set proc.Set
	defer set.StopAll(2 * time.Second)
	var chain []*proc.Process // client-side hop first
	for h := c0.Hops; h >= 1; h-- {
		p, listen, err := StartHop(ctx, proxies.Hop{Kind: c0.Proxy, Protocol: c0.Protocol, Upstream: target, Dir: dir,
			Name: fmt.Sprintf("%s-hop%d-%d", c0.Protocol, h, done)}, bins[c0.Proxy])
		if err != nil {
			return fmt.Errorf("%s %s: %w", c0.Protocol, c0.Topology(), err)
		}
		set.Add(p)
		chain = append([]*proc.Process{p}, chain...)
		target = listen
	}
	// Interleave the cases of the path in rounds, so that drift in the machine (other
	// load, frequency changes) hits every client alike.
	rounds := max(cfg.Rounds, 1)
	acc := make([]*measure, len(cases))
	failed := make([]bool, len(cases))
	var errs []error
	for r := range rounds {
		for k, c := range cases {
			if failed[k] {
				continue
			}
			m, err := runCase(ctx, cfg, c, target, up, chain, rounds)
			if err != nil {
				failed[k] = true
				fmt.Fprintf(logw, "[%d/%d] %s: ERROR %v\n", done+k+1, total, c, err)
				errs = append(errs, fmt.Errorf("%s: %w", c, err))
				if ctx.Err() != nil {
					return errors.Join(errs...)
				}
				continue
			}
			if acc[k] == nil {
				acc[k] = m
			} else {
				acc[k].add(m)
			}
			if r == rounds-1 {
				run := acc[k].run(c)
				rep.Runs = append(rep.Runs, run)
				fmt.Fprintf(logw, "[%d/%d] %s: %.0f req/s, p50 %.0f µs, p99 %.0f µs, %d errors\n",
					done+k+1, total, c, run.RPS, run.P50, run.P99, run.Errors)
			}
		}
	}
	for _, p := range chain {
		if p.Exited() {
			errs = append(errs, fmt.Errorf("%s exited during the runs; stderr: %s", p.Name, p.Stderr()))
		}
	}
	return errors.Join(errs...)
}

// StartHop starts one proxy on a free port (h.Listen is set here), trying again on another
// port if the first is taken in the meantime. It returns the process and its listen address.
func StartHop(ctx context.Context, h proxies.Hop, bin string) (*proc.Process, string, error) {
	var last error
	for range 3 {
		port, err := proc.FreePort()
		if err != nil {
			return nil, "", err
		}
		h.Listen = fmt.Sprintf("127.0.0.1:%d", port)
		p, err := proxies.Start(ctx, h, bin)
		if err == nil {
			return p, h.Listen, nil
		}
		last = err
	}
	return nil, "", last
}

// snapshot is the CPU time of every process and the upstream's counters at one moment.
type snapshot struct {
	self     time.Duration
	proxies  []time.Duration
	upstream time.Duration
	stats    upstream.Stats
	err      error
}

func take(up *upstream.Handle, chain []*proc.Process) snapshot {
	var s snapshot
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		s.err = err
	}
	s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	var r procstat.Reader
	for _, p := range chain {
		cpu, _, err := r.Group(p.PID())
		if err != nil && s.err == nil {
			s.err = fmt.Errorf("%s: %w", p.Name, err)
		}
		s.proxies = append(s.proxies, cpu)
	}
	st, err := r.Process(up.Proc.PID())
	if err != nil && s.err == nil {
		s.err = err
	}
	s.upstream = st.CPU()
	s.stats, err = up.Stats()
	if err != nil && s.err == nil {
		s.err = err
	}
	return s
}

// measure is what one or more rounds of a case measured.
type measure struct {
	res      load.Result
	self     time.Duration
	proxies  []time.Duration
	upstream time.Duration
	upConns  int64
}

func (m *measure) add(o *measure) {
	m.res.Requests += o.res.Requests
	m.res.Errors += o.res.Errors
	if m.res.FirstError == "" {
		m.res.FirstError = o.res.FirstError
	}
	m.res.Elapsed += o.res.Elapsed
	m.res.Hist.Merge(o.res.Hist)
	m.res.NewConns += o.res.NewConns
	m.self += o.self
	for i := range m.proxies {
		m.proxies[i] += o.proxies[i]
	}
	m.upstream += o.upstream
	m.upConns += o.upConns
}

func (m *measure) run(c Case) report.Run {
	res := m.res
	run := report.Run{
		Section: c.Section, Protocol: string(c.Protocol), Proxy: string(c.Proxy), Hops: c.Hops,
		Client: string(c.Client), Concurrency: c.Concurrency, Payload: string(c.Payload), Compression: string(c.Compression),
		Requests: res.Requests, Errors: res.Errors, FirstError: res.FirstError,
		Seconds: res.Elapsed.Seconds(), RPS: res.RPS(),
	}
	run.SetLatency(res.Hist)
	if n := float64(res.Requests); n > 0 {
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
		run.CPU.Client = per(m.self)
		for _, p := range m.proxies {
			run.CPU.Proxies = append(run.CPU.Proxies, per(p))
		}
		run.CPU.Upstream = per(m.upstream)
	}
	run.NewConns = report.Conns{Client: res.NewConns, Upstream: m.upConns}
	return run
}

// runCase runs one round of c: 1/rounds of its requests and time.
func runCase(ctx context.Context, cfg Config, c Case, addr string, up *upstream.Handle, chain []*proc.Process, rounds int) (*measure, error) {
	var before, after snapshot
	spec := load.Spec{
		Client:          c.Client,
		Target:          load.Target{Addr: addr, ViaProxy: c.Hops > 0, H2C: c.Protocol == proxies.H2C},
		Payload:         c.Payload,
		Compression:     c.Compression,
		Concurrency:     c.Concurrency,
		MaxRequests:     max(cfg.MaxRequests/rounds, 1),
		Duration:        cfg.Duration / time.Duration(rounds),
		WarmupPerWorker: cfg.WarmupPerWorker,
		Mark:            func() { before = take(up, chain) },
		End:             func() { after = take(up, chain) },
	}
	res, err := load.Run(ctx, spec)
	if err != nil {
		return nil, err
	}
	if before.err != nil || after.err != nil {
		return nil, errors.Join(before.err, after.err)
	}
	m := &measure{res: res, self: after.self - before.self, upstream: after.upstream - before.upstream}
	for i := range chain {
		m.proxies = append(m.proxies, after.proxies[i]-before.proxies[i])
	}
	if c.Protocol == proxies.GRPC {
		m.upConns = after.stats.GRPCConns - before.stats.GRPCConns
	} else {
		m.upConns = after.stats.HTTPConns - before.stats.HTTPConns
	}
	return m, nil
}

// Files are the names Write gives its outputs inside the output directory.
const (
	FileJSON     = "results.json"
	FileMarkdown = "results.md"
	FileSVG      = "latency.svg"
	FilePNG      = "latency.png"
)

// Write writes the report's JSON, markdown and chart (SVG and PNG; left out when no run
// can be charted) into dir and returns the paths written.
func Write(rep *report.Report, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	js, err := rep.JSON()
	if err != nil {
		return nil, err
	}
	chart := ""
	if rep.CanChart() {
		chart = FileSVG
	}
	type output struct {
		name string
		data func(io.Writer) error
	}
	outputs := []output{
		{FileJSON, func(w io.Writer) error { _, err := w.Write(js); return err }},
		{FileMarkdown, func(w io.Writer) error { _, err := io.WriteString(w, rep.Markdown(chart)); return err }},
	}
	if chart != "" {
		outputs = append(outputs,
			output{FileSVG, func(w io.Writer) error { return rep.Chart(w, "svg") }},
			output{FilePNG, func(w io.Writer) error { return rep.Chart(w, "png") }})
	}
	for _, o := range outputs {
		p := filepath.Join(dir, o.name)
		f, err := os.Create(p)
		if err != nil {
			return files, err
		}
		err = o.data(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return files, fmt.Errorf("writing %s: %w", p, err)
		}
		files = append(files, p)
	}
	return files, nil
}
