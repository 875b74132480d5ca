package harness

import (
	"fmt"
	"io"
	"os/exec"
	"time"

	"github.com/infermesh/infermesh/benchmarks/internal/load"
	"github.com/infermesh/infermesh/benchmarks/internal/payload"
	"github.com/infermesh/infermesh/benchmarks/internal/proxies"
	"github.com/infermesh/infermesh/benchmarks/internal/report"
)

// Config configures a benchmark.
type Config struct {
	// Quick marks a reduced smoke-test run (recorded in the report).
	Quick bool
	// MaxRequests and Duration bound the measured phase of every run.
	MaxRequests int
	Duration    time.Duration
	// WarmupPerWorker is how many requests each worker makes before measuring.
	WarmupPerWorker int
	// Rounds splits each case's requests and time into this many rounds, interleaved with
	// the other cases of the same path, so that drift in the machine hits every client
	// alike. 0 means 1.
	Rounds int
	// Concurrency lists the concurrencies of the hops section.
	Concurrency []int
	// Protocols lists the protocols of the hops section.
	Protocols []proxies.Protocol
	// Proxies lists the proxies to try; a missing binary is skipped.
	Proxies []proxies.Kind
	// MaxHops is the longest chain (1 or 2).
	MaxHops int
	// Payloads lists the payloads of the payloads section; empty skips the section.
	Payloads []payload.Kind
	// Compressions lists the codings of the payloads section.
	Compressions []load.Compression
	// PayloadConcurrency is the concurrency of the payloads section.
	PayloadConcurrency int
	// PayloadProtocols lists the protocols of the payloads section.
	PayloadProtocols []proxies.Protocol
	// UpstreamCommand returns the command that runs the upstream process (a program whose
	// main calls upstream.Serve).
	UpstreamCommand func() *exec.Cmd
	// Log receives one progress line per run; nil discards them.
	Log io.Writer
}

// DefaultConfig is the full run.
func DefaultConfig() Config {
	return Config{
		MaxRequests:        20000,
		Duration:           time.Second,
		WarmupPerWorker:    10,
		Rounds:             3,
		Concurrency:        []int{1, 16, 64},
		Protocols:          []proxies.Protocol{proxies.HTTP1, proxies.H2C, proxies.GRPC},
		Proxies:            proxies.Kinds(),
		MaxHops:            2,
		Payloads:           payload.Kinds(),
		Compressions:       []load.Compression{load.None, load.Gzip, load.Zstd},
		PayloadConcurrency: 1,
		PayloadProtocols:   []proxies.Protocol{proxies.HTTP1, proxies.GRPC},
	}
}

// QuickConfig is the smoke test: every path, protocol and client at one concurrency with
// short runs, and the two large payloads without and with zstd, direct only.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Quick = true
	c.MaxRequests = 2000
	c.Duration = 250 * time.Millisecond
	c.WarmupPerWorker = 3
	c.Rounds = 1
	c.Concurrency = []int{16}
	c.Payloads = []payload.Kind{payload.KindEmbeddings, payload.KindTensor}
	c.Compressions = []load.Compression{load.None, load.Zstd}
	return c
}

// Case is one run of the matrix.
type Case struct {
	Section     string
	Protocol    proxies.Protocol
	Proxy       proxies.Kind // "" when direct
	Hops        int
	Client      load.Client
	Concurrency int
	Payload     payload.Kind
	Compression load.Compression
}

// Topology names the case's path.
func (c Case) Topology() string { return report.Topology(string(c.Proxy), c.Hops) }

func (c Case) String() string {
	return fmt.Sprintf("%s %s %s %s c=%d %s/%s", c.Section, c.Protocol, c.Topology(), c.Client, c.Concurrency, c.Payload, c.Compression)
}

// ClientsFor lists the clients of a protocol: the plain one first.
func ClientsFor(p proxies.Protocol) []load.Client {
	if p == proxies.GRPC {
		return []load.Client{load.GRPCDefault, load.GRPCInfer}
	}
	return []load.Client{load.Stdlib, load.Transport, load.LLMClient}
}

// Plan returns the cases for cfg given the proxies found, and what it left out and why.
// Cases of one path (protocol, proxy, hops) are adjacent, so each proxy chain starts once.
func Plan(cfg Config, found []proxies.Kind) (cases []Case, skipped []string) {
	type path struct {
		proxy proxies.Kind
		hops  int
	}
	paths := []path{{"", 0}}
	for _, k := range found {
		for h := 1; h <= cfg.MaxHops; h++ {
			paths = append(paths, path{k, h})
		}
	}
	for _, proto := range cfg.Protocols {
		for _, p := range paths {
			if p.hops > 0 {
				if ok, why := p.proxy.Supports(proto); !ok {
					if p.hops == 1 {
						skipped = append(skipped, fmt.Sprintf("%s over %s: %s", proto, p.proxy, why))
					}
					continue
				}
			}
			for _, cl := range ClientsFor(proto) {
				for _, conc := range cfg.Concurrency {
					cases = append(cases, Case{Section: report.SectionHops, Protocol: proto, Proxy: p.proxy, Hops: p.hops,
						Client: cl, Concurrency: conc, Payload: payload.KindChat, Compression: load.None})
				}
			}
		}
	}
	if len(cfg.Payloads) == 0 || len(cfg.Compressions) == 0 {
		return cases, skipped
	}
	ppaths := []path{{"", 0}}
	if len(found) > 0 && !cfg.Quick {
		ppaths = append(ppaths, path{found[0], 1})
	}
	for _, proto := range cfg.PayloadProtocols {
		for _, p := range ppaths {
			if p.hops > 0 {
				if ok, _ := p.proxy.Supports(proto); !ok {
					continue
				}
			}
			for _, pl := range cfg.Payloads {
				for _, cl := range ClientsFor(proto) {
					if cl == load.Transport || cl == load.GRPCDefault || cl == load.Stdlib || cl == load.GRPCInfer {
						for _, comp := range cfg.Compressions {
							if !supports(cl, comp) {
								continue
							}
							cases = append(cases, Case{Section: report.SectionPayloads, Protocol: proto, Proxy: p.proxy, Hops: p.hops,
								Client: cl, Concurrency: cfg.PayloadConcurrency, Payload: pl, Compression: comp})
						}
					}
				}
			}
		}
	}
	return cases, skipped
}

// supports reports whether client c can send coding comp: the plain clients send none or
// gzip (by hand), infermesh's send all three.
func supports(c load.Client, comp load.Compression) bool {
	switch c {
	case load.Stdlib, load.GRPCDefault:
		return comp == load.None || comp == load.Gzip
	case load.Transport, load.GRPCInfer:
		return true
	}
	return false
}
