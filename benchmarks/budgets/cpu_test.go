package budgets

import (
	"context"
	"fmt"
	"net/http"

	"github.com/infermesh/infermesh/benchmarks/overhead"
	"github.com/infermesh/infermesh/quota"
)

// Plans of the in-process comparisons: blocks of a few milliseconds each, so that a turn
// is long against the clock's resolution and short against changes in the machine's load.
func policyPlan(rounds int) plan { return plan{rounds: rounds, blocks: 10, block: 2000, warmup: 2000} }
func unaryPlan(rounds int) plan  { return plan{rounds: rounds, blocks: 20, block: 200, warmup: 200} }
func streamPlan(rounds int) plan { return plan{rounds: rounds, blocks: 10, block: 40, warmup: 50} }

// measurePolicy is budget 1: breaker.Do with the full policy against failsafe-go's retry,
// breaker and timeouts composed the same way, the cases of package overhead.
func measurePolicy(p plan) (verdict, error) {
	var cs []contender
	for _, name := range []string{"infermesh", "failsafe-go"} {
		pc, ok := overhead.Policy(name)
		if !ok {
			return verdict{}, fmt.Errorf("package overhead has no %q case", name)
		}
		call, err := pc.New(overhead.PerTryTimeout, overhead.OverallTimeout)
		if err != nil {
			return verdict{}, fmt.Errorf("%s: %w", name, err)
		}
		ctx := context.Background()
		cs = append(cs, contender{name, func() error {
			if v, err := call(ctx, overhead.Noop); err != nil || v != 1 {
				return fmt.Errorf("no-op = %d, %v", v, err)
			}
			return nil
		}})
	}
	rounds, err := interleave(cs, p)
	if err != nil {
		return verdict{}, err
	}
	return verdict{
		name:   "breaker.Do full policy vs failsafe-go",
		budget: "CPU per call <= 0.75x failsafe-go's (timeout, retry, breaker, per-try timeout)",
		ratio:  turnsRatio(rounds, func(r []sample) float64 { return turnCPU(r, 0) / turnCPU(r, 1) }),
		about:  turnsAbout,
		limit:  0.75,
		lines:  []string{describe("infermesh breaker.Do", rounds, 0), describe("failsafe-go", rounds, 1)},
	}, nil
}

// sdkCase is one socket-free client of go-openai: over the canned transport alone (bare),
// or through llmclient over it.
type sdkCase struct {
	name  string
	quota bool // a local quota.Limiter with generous limits
}

// sdkContenders returns go-openai over each case's client, and a function that releases
// the clients.
func sdkContenders(cases []sdkCase, stream bool) ([]contender, func(), error) {
	var cs []contender
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	base := cannedBase(stream)
	for _, sc := range cases {
		hc := &http.Client{Transport: base}
		if sc.name != "bare" {
			var lim *quota.Limiter
			if sc.quota {
				var err error
				if lim, err = quota.New(quota.Config{Limits: generousLimits()}); err != nil {
					closeAll()
					return nil, nil, err
				}
				closers = append(closers, func() { _ = lim.Close() })
			}
			var err error
			if hc, err = newLLMClient(base, lim); err != nil {
				closeAll()
				return nil, nil, err
			}
			closers = append(closers, hc.CloseIdleConnections)
		}
		cs = append(cs, contender{sc.name, newSDK(hc, "http://"+cannedHost+"/v1", stream).call(stream)})
	}
	return cs, closeAll, nil
}

// measureUnary is budgets 2 and 6b on one interleaved run of unary chat calls: bare
// go-openai, go-openai through llmclient, and through llmclient with a local quota.
func measureUnary(p plan) (added, localQuota verdict, err error) {
	cs, closeAll, err := sdkContenders([]sdkCase{{name: "bare"}, {name: "infermesh"}, {name: "infermesh+local quota", quota: true}}, false)
	if err != nil {
		return added, localQuota, err
	}
	defer closeAll()
	rounds, err := interleave(cs, p)
	if err != nil {
		return added, localQuota, err
	}
	lines := []string{describe("go-openai bare", rounds, 0), describe("go-openai + llmclient", rounds, 1),
		describe("go-openai + llmclient + local quota", rounds, 2)}
	added = verdict{
		name:   "llmclient added CPU per unary chat call",
		budget: "(infermesh - bare) / bare <= 0.75 (go-openai's own client-side CPU)",
		ratio:  turnsRatio(rounds, func(r []sample) float64 { return addedCPU(r, 1, 0) / turnCPU(r, 0) }),
		about:  turnsAbout,
		limit:  0.75,
		lines:  lines,
	}
	localQuota = verdict{
		name:   "local quota admission CPU per unary call",
		budget: "(infermesh+local quota - infermesh) / (infermesh - bare) <= 0.1",
		ratio:  turnsRatio(rounds, func(r []sample) float64 { return addedCPU(r, 2, 1) / addedCPU(r, 1, 0) }),
		about:  turnsAbout,
		limit:  0.1,
		lines:  lines,
	}
	return added, localQuota, nil
}

// measureStream is budget 3: an 11-event stream read to its end by bare go-openai and
// through llmclient.
func measureStream(p plan) (verdict, error) {
	cs, closeAll, err := sdkContenders([]sdkCase{{name: "bare"}, {name: "infermesh"}}, true)
	if err != nil {
		return verdict{}, err
	}
	defer closeAll()
	rounds, err := interleave(cs, p)
	if err != nil {
		return verdict{}, err
	}
	return verdict{
		name:   "llmclient added CPU per 11-event stream",
		budget: "(infermesh - bare) / bare <= 0.5 (go-openai's own client-side CPU)",
		ratio:  turnsRatio(rounds, func(r []sample) float64 { return addedCPU(r, 1, 0) / turnCPU(r, 0) }),
		about:  turnsAbout,
		limit:  0.5,
		lines:  []string{describe("go-openai bare stream", rounds, 0), describe("go-openai + llmclient stream", rounds, 1)},
	}, nil
}
