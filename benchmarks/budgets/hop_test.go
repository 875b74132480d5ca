package budgets

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/infermesh/infermesh/benchmarks/internal/harness"
	"github.com/infermesh/infermesh/benchmarks/internal/load"
	"github.com/infermesh/infermesh/benchmarks/internal/payload"
	"github.com/infermesh/infermesh/benchmarks/internal/proxies"
	"github.com/infermesh/infermesh/benchmarks/internal/report"
	"github.com/infermesh/infermesh/benchmarks/internal/upstream"
)

// hopRun is one client on one path of the hop budget.
type hopRun struct {
	client load.Client
	hop    bool // through the HAProxy hop, else direct
}

func (h hopRun) String() string {
	if h.hop {
		return fmt.Sprintf("%s, haproxy 1 hop", h.client)
	}
	return fmt.Sprintf("%s, direct", h.client)
}

// The runs of the hop budget; the first three are the ratio's terms.
var hopRuns = []hopRun{
	{load.Transport, false}, {load.Transport, true}, {load.LLMClient, true},
	{load.LLMClient, false}, {load.Stdlib, false}, {load.Stdlib, true},
}

// hopPlan bounds each run of each round: at most maxRequests and duration after warmup
// requests.
type hopPlan struct {
	rounds, maxRequests, warmup int
	duration                    time.Duration
}

// errNoProxy says HAProxy is not installed.
type errNoProxy struct{ err error }

func (e errNoProxy) Error() string {
	return fmt.Sprintf("haproxy: %v; to include it: %s", e.err, proxies.HAProxy.InstallHint())
}

// measureHop is budget 4: through one HAProxy hop at concurrency 1 over HTTP/1.1, what
// llmclient adds to the transport preset's p50, against what the hop adds to the transport
// preset's p50 over the direct path. meshbench's upstream runs in another process (this
// binary in roleUpstream). Every run of a round goes in turn, in a new order each round (so
// that no run always follows the same one, with the proxy idle or busy before it), and the
// rounds are short and many, so that the machine's load hits every term alike; the p50s are
// those of every round's latencies pooled.
func measureHop(ctx context.Context, p hopPlan) (verdict, error) {
	bin, err := proxies.Find(proxies.HAProxy)
	if err != nil {
		return verdict{}, errNoProxy{err}
	}
	exe, err := os.Executable()
	if err != nil {
		return verdict{}, err
	}
	up, err := upstream.Start(ctx, exec.Command(exe, roleUpstream))
	if err != nil {
		return verdict{}, err
	}
	defer up.Stop()
	dir, err := os.MkdirTemp("", "budgets-hop-")
	if err != nil {
		return verdict{}, err
	}
	defer os.RemoveAll(dir)
	hop, listen, err := harness.StartHop(ctx, proxies.Hop{Kind: proxies.HAProxy, Protocol: proxies.HTTP1,
		Upstream: up.HTTPAddr, Dir: dir, Name: "budgets-hop"}, bin)
	if err != nil {
		return verdict{}, err
	}
	defer hop.Stop(2 * time.Second)

	// Each run's histogram goes into the pool of its third of the rounds: the verdict is the
	// ratio of the pooled p50s, its range the ratios of the thirds'.
	thirds := make([][]*hdrhistogram.Histogram, 3)
	for t := range thirds {
		thirds[t] = make([]*hdrhistogram.Histogram, len(hopRuns))
		for i := range hopRuns {
			thirds[t][i] = load.NewHistogram()
		}
	}
	requests := make([]int64, len(hopRuns))
	order := rand.New(rand.NewPCG(1, 2)) // the same orders on every run
	for r := range p.rounds {
		for _, i := range order.Perm(len(hopRuns)) {
			hr := hopRuns[i]
			addr := up.HTTPAddr
			if hr.hop {
				addr = listen
			}
			res, err := load.Run(ctx, load.Spec{Client: hr.client, Target: load.Target{Addr: addr, ViaProxy: hr.hop},
				Payload: payload.KindChat, Compression: load.None, Concurrency: 1,
				MaxRequests: p.maxRequests, Duration: p.duration, WarmupPerWorker: p.warmup})
			if err == nil && res.Errors > 0 {
				err = fmt.Errorf("%d failed requests, first: %s", res.Errors, res.FirstError)
			}
			if err != nil {
				return verdict{}, fmt.Errorf("%s: %w", hr, err)
			}
			thirds[r*3/p.rounds][i].Merge(res.Hist)
			requests[i] += res.Requests
		}
	}
	if hop.Exited() {
		return verdict{}, fmt.Errorf("haproxy exited during the runs; stderr: %s", hop.Stderr())
	}
	pooled := make([]*hdrhistogram.Histogram, len(hopRuns))
	for i := range hopRuns {
		pooled[i] = load.NewHistogram()
		for t := range thirds {
			pooled[i].Merge(thirds[t][i])
		}
	}
	var lines []string
	for i, hr := range hopRuns {
		h := pooled[i]
		lines = append(lines, fmt.Sprintf("%-36s p50 %4d µs, p90 %5d, p99 %5d µs, %d requests",
			hr, h.ValueAtQuantile(50), h.ValueAtQuantile(90), h.ValueAtQuantile(99), requests[i]))
	}
	frac := func(hs []*hdrhistogram.Histogram) float64 {
		direct, hop, llm := hs[0].ValueAtQuantile(50), hs[1].ValueAtQuantile(50), hs[2].ValueAtQuantile(50)
		return float64(llm-hop) / float64(hop-direct)
	}
	ths := make([]float64, len(thirds))
	for t := range thirds {
		ths[t] = frac(thirds[t])
	}
	rs := spreadOf(ths)
	pd, ph, pl := pooled[0].ValueAtQuantile(50), pooled[1].ValueAtQuantile(50), pooled[2].ValueAtQuantile(50)
	lines = append(lines, fmt.Sprintf("%d rounds of at most %v per run; llmclient adds %+d µs p50 over the transport preset through the hop, the hop adds %+d µs over direct",
		p.rounds, p.duration, pl-ph, ph-pd))
	return verdict{
		name: "llmclient added p50 through one HAProxy hop",
		budget: fmt.Sprintf("(llmclient p50 - transport preset p50, both through the hop) / (hop p50 - direct p50) <= %.2f, HTTP/1.1, concurrency 1",
			report.BudgetFracOfHop),
		ratio: spread{med: frac(pooled), lo: rs.lo, hi: rs.hi},
		about: "pooled p50s of every round; range: each third of the rounds pooled",
		limit: report.BudgetFracOfHop,
		lines: lines,
	}, nil
}
