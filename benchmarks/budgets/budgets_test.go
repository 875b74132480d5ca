package budgets

import (
	"errors"
	"flag"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/internal/redistest"
)

var (
	runBudgets  = flag.Bool("budgets", false, "measure every budget (several minutes) and log the verdicts; use with -v")
	rounds      = flag.Int("budgets.rounds", 9, "rounds of each comparison; the ratios are the medians of the rounds'")
	streams     = flag.Int("budgets.streams", 1000, "streams held open at once by each client, for the heap budget")
	hopRounds   = flag.Int("budgets.hop.rounds", 30, "rounds of the hop budget (its runs are short: its p50s pool every round's)")
	hopDuration = flag.Duration("budgets.hop", 500*time.Millisecond, "longest run of each client and path per round, for the hop budget")
	heapProfile = flag.String("budgets.heapprofile", "", "write a heap profile of each client's open streams to `prefix`.<client>.heap (the heap budget's first round)")
)

// TestMain lets this binary serve as the upstream or the hold server when it re-executes
// itself (see runRole), and checks that the tests leave no goroutine behind.
func TestMain(m *testing.M) {
	if code, ran := runRole(os.Args[1:]); ran {
		os.Exit(code)
	}
	redistest.QuietLogs()
	goleak.VerifyTestMain(m)
}

// TestBudgets measures every budget side by side in one run and logs each verdict and a
// table; a missed budget fails the test. It runs only with -budgets; -run
// 'TestBudgets/<name>' picks budgets:
//
//	go test ./budgets -run TestBudgets -budgets -v -timeout 30m
func TestBudgets(t *testing.T) {
	if !*runBudgets {
		t.Skip("measures for several minutes: run with -budgets -v")
	}
	ctx := t.Context()
	t.Logf("load average at the start: %s", loadAverage())
	var vs []verdict
	keep := func(t *testing.T, v verdict, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", v)
		vs = append(vs, v)
		if !v.met() {
			t.Errorf("budget missed: %s: %.3f, limit %.2f", v.name, v.ratio.med, v.limit)
		}
	}
	t.Run("policy", func(t *testing.T) {
		v, err := measurePolicy(policyPlan(*rounds))
		keep(t, v, err)
	})
	var localQuota verdict
	t.Run("unary", func(t *testing.T) {
		added, lq, err := measureUnary(unaryPlan(*rounds))
		keep(t, added, err)
		localQuota = lq
	})
	t.Run("stream", func(t *testing.T) {
		v, err := measureStream(streamPlan(*rounds))
		keep(t, v, err)
	})
	t.Run("hop", func(t *testing.T) {
		v, err := measureHop(ctx, hopPlan{rounds: *hopRounds, maxRequests: 20000, warmup: 50, duration: *hopDuration})
		skipWithoutProxy(t, err)
		keep(t, v, err)
	})
	t.Run("heap", func(t *testing.T) {
		v, err := measureHeap(ctx, *streams, 3, *heapProfile)
		keep(t, v, err)
	})
	t.Run("shared quota", func(t *testing.T) {
		rdb := redistest.Start(t).Client()
		v, _, err := measureSharedQuota(ctx, rdb, 0, unaryPlan(*rounds))
		keep(t, v, err)
	})
	t.Run("local quota", func(t *testing.T) {
		if localQuota.name == "" {
			t.Skip("measured with unary, which did not run")
		}
		keep(t, localQuota, nil)
	})
	t.Logf("load average at the end: %s\n\n%s", loadAverage(), table(vs))
}

// skipWithoutProxy skips t when err says HAProxy is not installed, except under CI=true,
// where it fails.
func skipWithoutProxy(t *testing.T, err error) {
	t.Helper()
	var np errNoProxy
	if errors.As(err, &np) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("haproxy is required under CI=true: %v", err)
		}
		t.Skip(err)
	}
}

// loadAverage returns the 1, 5 and 15 minute load averages of the machine.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

// TestSmoke runs every measurement on a tiny plan, so that the code that takes the budgets
// keeps working, and checks what must hold whatever the machine's load.
func TestSmoke(t *testing.T) {
	ctx := t.Context()
	tiny := plan{rounds: 1, blocks: 2, block: 10, warmup: 5}
	t.Run("policy", func(t *testing.T) { checkVerdict(t)(measurePolicy(tiny)) })
	t.Run("unary", func(t *testing.T) {
		added, localQuota, err := measureUnary(tiny)
		checkVerdict(t)(added, err)
		checkVerdict(t)(localQuota, err)
	})
	t.Run("stream", func(t *testing.T) { checkVerdict(t)(measureStream(plan{rounds: 1, blocks: 2, block: 3, warmup: 2})) })
	t.Run("heap", func(t *testing.T) {
		v, err := measureHeap(ctx, 50, 1, "")
		checkVerdict(t)(v, err)
		if !(v.ratio.med > 0) {
			t.Errorf("llmclient's heap per stream is not positive: %v", v)
		}
	})
	t.Run("hop", func(t *testing.T) {
		v, err := measureHop(ctx, hopPlan{rounds: 3, maxRequests: 10, warmup: 3, duration: 10 * time.Second})
		skipWithoutProxy(t, err)
		if err != nil {
			t.Fatal(err)
		}
		// 30 requests per client and path are too few for a ratio of p50 differences that
		// means something; check the runs happened.
		if len(v.lines) != len(hopRuns)+1 || !strings.Contains(v.lines[0], ", 30 requests") {
			t.Errorf("hop runs:\n%v", v)
		}
		t.Logf("\n%s", v)
	})
	t.Run("shared quota", func(t *testing.T) {
		rdb := redistest.Start(t).Client()
		// A long RedisTimeout, so that a loaded machine cannot send admissions to the
		// local limits and change the counts.
		v, f, err := measureSharedQuota(ctx, rdb, 30*time.Second, tiny)
		checkVerdict(t)(v, err)
		if f.calls == 0 || f.callRTs != f.calls || f.admittedShared != f.calls {
			t.Errorf("%d calls made %d round trips on their path and %d shared admissions; want one each per call:\n%v",
				f.calls, f.callRTs, f.admittedShared, v)
		}
		// A heartbeat can be on its way while the counts are read, on either side.
		if sent := f.callRTs + f.trueUps; f.serverScripts < sent || f.serverScripts > sent+f.beats+1 {
			t.Errorf("Redis ran %d scripts; the client sent %d for the calls and %d heartbeats",
				f.serverScripts, sent, f.beats)
		}
		if f.trueUps < 1 || f.trueUps > f.calls {
			t.Errorf("%d true-up round trips for %d calls, each settled below its estimate; want 1 to %d",
				f.trueUps, f.calls, f.calls)
		}
		if !v.met() {
			t.Errorf("the verdict says missed: %v", v)
		}
	})
}

// checkVerdict returns a function that fails t on err or on a verdict without figures or
// with a ratio that is not a number.
func checkVerdict(t *testing.T) func(verdict, error) {
	return func(v verdict, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if len(v.lines) == 0 || math.IsNaN(v.ratio.med) || math.IsInf(v.ratio.med, 0) {
			t.Errorf("verdict without figures or ratio:\n%v", v)
		}
		t.Logf("\n%s", v)
	}
}

// BenchmarkChat is one unary chat call through go-openai over the canned transport: bare,
// through llmclient, and through llmclient with a local quota. TestBudgets interleaves the
// same calls and measures their process CPU.
func BenchmarkChat(b *testing.B) { benchSDK(b, false) }

// BenchmarkStream is one 11-event stream read to its end, as BenchmarkChat.
func BenchmarkStream(b *testing.B) { benchSDK(b, true) }

func benchSDK(b *testing.B, stream bool) {
	cases := []sdkCase{{name: "bare"}, {name: "infermesh"}}
	if !stream {
		cases = append(cases, sdkCase{name: "infermesh+local quota", quota: true})
	}
	cs, closeAll, err := sdkContenders(cases, stream)
	if err != nil {
		b.Fatal(err)
	}
	defer closeAll()
	for _, c := range cs {
		b.Run(strings.ReplaceAll(c.name, " ", "-"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
