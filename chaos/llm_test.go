package chaos_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/sdkerr"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// burst is the number of concurrent calls per case.
const burst = 64

// Timings are short so that a burst's faults, retries and fallbacks take seconds; the
// deadline is what each call's context allows, and slack what real sockets under -race
// may add on a quiet machine (slackUnder scales it with the load). The gRPC tests share
// them.
const (
	callDeadline = 3 * time.Second
	slack        = 750 * time.Millisecond
	firstToken   = 300 * time.Millisecond
	idle         = 300 * time.Millisecond
)

// Size caps of the rig's client, and the faults' sizes above them. Healthy answers (and
// the events a Responses stream holds back before its first output) are under 2 KiB; the
// sizes are small because under the race detector producing, compressing and reading
// padding costs CPU in every call of a burst.
const (
	maxBody     = 16 << 10
	oversize    = 2 * maxBody
	bombDecoded = 2 * maxBody
)

// namedFault is a fault of the matrix with its name.
type namedFault struct {
	name  string
	fault llmtest.Fault
}

// faults is every fault kind llmtest injects, each where it strikes differently: before
// or after a stream's first output. A plain AfterChunks counts content chunks on chat but
// every event on a Responses stream (so "reset-after-2" cuts a chat stream after output
// and a Responses stream before it); the CountingOutput variants strike at the same
// place on every route.
func faults() []namedFault {
	afterOutput := func(f llmtest.Fault, n int) llmtest.Fault {
		f.AfterChunks = n
		return f.CountingOutput()
	}
	return []namedFault{
		{"none-through-envoy", llmtest.Envoy(2*time.Millisecond, 1)},
		{"429", llmtest.Status(429).WithRetryAfter(50*time.Millisecond, llmtest.RetryAfterMillis)},
		{"429-date", llmtest.Status(429).WithRetryAfter(time.Millisecond, llmtest.RetryAfterDate)}, // the next whole second
		{"500", llmtest.Status(500)},
		{"502", llmtest.Status(502)},
		{"503", llmtest.Status(503)},
		{"504", llmtest.Status(504)},
		{"envoy-overflow", llmtest.EnvoyOverflow()},
		{"envoy-no-healthy-upstream", llmtest.EnvoyNoHealthyUpstream()},
		{"envoy-connect-failure", llmtest.EnvoyConnectFailure()},
		{"envoy-upstream-timeout", llmtest.EnvoyUpstreamTimeout()},
		{"mesh-retried", llmtest.Status(503).WithEnvoyHeaders(2*time.Millisecond, 2)},
		{"reset", llmtest.Reset()},
		{"reset-after-2", llmtest.ResetAfter(2)},
		{"reset-before-output", afterOutput(llmtest.ResetAfter(0), 0)},
		{"reset-after-output", afterOutput(llmtest.ResetAfter(0), 2)},
		{"stall-before-headers", llmtest.StallBeforeHeaders(0)},
		{"stall-before-first-chunk", llmtest.StallBeforeFirstChunk(0)},
		{"stall-after-2", llmtest.StallAfter(2, 0)},
		{"stall-after-output", afterOutput(llmtest.StallAfter(0, 0), 2)},
		{"error-event", llmtest.ErrorEvent(0)}, // an error object in a 200 JSON body when not streamed
		{"error-event-after-2", llmtest.ErrorEvent(2)},
		{"error-event-after-output", afterOutput(llmtest.ErrorEvent(0), 2)},
		{"malformed-json", llmtest.MalformedJSON(1)},
		{"malformed-json-after-output", afterOutput(llmtest.MalformedJSON(0), 2)},
		{"oversized", llmtest.Oversized(oversize)},
		{"oversized-after-output", afterOutput(llmtest.Oversized(oversize), 2)},
		{"truncate-before-output", afterOutput(llmtest.Truncate(0), 0)},
		{"truncate-after-output", afterOutput(llmtest.Truncate(0), 2)},
		{"response-failed", llmtest.ResponseFailed(0)},
		{"response-failed-after-output", afterOutput(llmtest.ResponseFailed(0), 2)},
		{"gzip-bomb", llmtest.GzipBomb(bombDecoded)},
		{"gzip-bomb-after-output", afterOutput(llmtest.GzipBomb(bombDecoded), 2)},
	}
}

// TestFaultsCoverEveryKind: the matrix (and every test that takes its faults) has each
// kind llmtest knows, so that a new kind cannot be left out.
func TestFaultsCoverEveryKind(t *testing.T) {
	have := map[llmtest.Kind]bool{}
	for _, f := range faults() {
		have[f.fault.Kind] = true
	}
	for k := llmtest.Kind(0); k < 100; k++ {
		if strings.HasPrefix(k.String(), "Kind(") {
			break // past the last kind
		}
		if !have[k] {
			t.Errorf("no fault of kind %v in the matrix", k)
		}
	}
}

// outcome is how one call ended.
type outcome int

const (
	success outcome = iota
	servedByFallback
	typedError
	lost // an untyped error, an answer cut without an error, or past the deadline
)

type tally struct {
	mu     sync.Mutex
	counts [4]int
	notes  []string
	kinds  map[string]int // typed errors by kind
	latest time.Duration  // the longest call
}

func (t *tally) add(o outcome, note string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts[o]++
	if o == lost && len(t.notes) < 5 {
		t.notes = append(t.notes, note)
	}
}

// addReply tallies a call of the matrix.
func (t *tally) addReply(r reply, limit time.Duration) {
	o, note := judge(r, limit)
	t.add(o, note)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.latest = max(t.latest, r.took)
	if o == typedError {
		if t.kinds == nil {
			t.kinds = map[string]int{}
		}
		t.kinds[typedEnd(r)]++
	}
}

// kindsLine lists the typed errors seen, most frequent first.
func (t *tally) kindsLine() string {
	names := make([]string, 0, len(t.kinds))
	for k := range t.kinds {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return t.kinds[names[i]] > t.kinds[names[j]] })
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "; %s ×%d", k, t.kinds[k])
	}
	return b.String()
}

// typedEnd names how a call that ended in a typed error ended.
func typedEnd(r reply) string {
	if r.err == nil && r.failedResponse() {
		return "response.failed (" + r.end + ")"
	}
	return sdkerr.Kind(r.err)
}

// judge says how a call ended, given how long past its deadline it may take to return.
// A success is a whole answer: a finish reason or a completed response, from one upstream
// request (the held-back events of an attempt that lost never reach the caller).
func judge(r reply, late time.Duration) (outcome, string) {
	switch {
	case r.took > callDeadline+late:
		return lost, fmt.Sprintf("took %v, past the deadline plus %v", r.took, late)
	case len(r.sources) > 1:
		return lost, fmt.Sprintf("one answer from upstream requests %v", r.sources)
	case r.err != nil && sdkerr.Kind(r.err) != "":
		return typedError, ""
	case r.err != nil:
		return lost, fmt.Sprintf("untyped %T: %v", r.err, r.err)
	case r.failedResponse():
		return typedError, "" // the upstream's response.failed, in the SDK's own types
	case !r.complete():
		return lost, fmt.Sprintf("no error, but the answer ended without its end (%q)", r.end)
	case r.servedBy() != "":
		return servedByFallback, ""
	}
	return success, ""
}

// concurrentBursts is how many columns of a fault run at once: the waits of the stalls
// and retry hints overlap, and the calls in flight (concurrentBursts × burst) stay few
// enough for a 2-core machine under the race detector.
const concurrentBursts = 2

// matrixCase is one column of one fault in the matrix.
type matrixCase struct {
	ck           callKind
	withFallback bool
	tally        *tally
}

func (c matrixCase) name() string { return fmt.Sprintf("%s/fallback=%v", c.ck.name, c.withFallback) }

// TestChaosMatrix runs every fault, for chat and the Responses API, streamed and not, with
// and without a fallback, as bursts of concurrent calls through go-openai and openai-go
// (alternating within a burst). Every call ends as a success, a marked fallback or a
// typed error, before its deadline plus a slack that scales with the load; nothing
// leaks. Each column has its own servers and client; a few run at once.
func TestChaosMatrix(t *testing.T) {
	var total [4]int
	for _, f := range faults() {
		t.Run(f.name, func(t *testing.T) {
			var cases []*matrixCase
			for _, ck := range callKinds() {
				for _, withFallback := range []bool{false, true} {
					cases = append(cases, &matrixCase{ck: ck, withFallback: withFallback, tally: &tally{}})
				}
			}
			rigs := make([]*rig, len(cases))
			for i, c := range cases {
				rigs[i] = newRig(t, c.withFallback, nil)
				rigs[i].primary.SetRules(llmtest.Rule{Fault: f.fault})
			}
			probe := startProbe()
			var wg sync.WaitGroup
			running := make(chan struct{}, concurrentBursts)
			for i, c := range cases {
				wg.Go(func() {
					running <- struct{}{}
					defer func() { <-running }()
					replies := rigs[i].burstOf(c.ck)
					late := slackUnder(probe.sofar())
					for _, res := range replies {
						c.tally.addReply(res, late)
					}
				})
			}
			wg.Wait()
			for _, r := range rigs {
				r.close()
			}
			worst := probe.end()
			verifyNone(t)
			var latest time.Duration
			for _, c := range cases {
				tl := c.tally
				latest = max(latest, tl.latest)
				for i, n := range tl.counts {
					total[i] += n
				}
				if tl.counts[lost] > 0 {
					t.Errorf("%s: %d calls lost: %v", c.name(), tl.counts[lost], tl.notes)
				}
				if !c.withFallback && tl.counts[servedByFallback] > 0 {
					t.Errorf("%s: %d calls marked as fallback without one", c.name(), tl.counts[servedByFallback])
				}
				t.Logf("%s: success %d, fallback %d, typed error %d, lost %d%s", c.name(),
					tl.counts[success], tl.counts[servedByFallback], tl.counts[typedError], tl.counts[lost], tl.kindsLine())
			}
			t.Logf("worst timer lateness %v; longest call %v (deadline %v, slack %v)", worst, latest, callDeadline, slackUnder(worst))
		})
	}
	t.Logf("matrix: %d calls: success %d, fallback %d, typed error %d, lost %d",
		total[0]+total[1]+total[2]+total[3], total[success], total[servedByFallback], total[typedError], total[lost])
}

// chatKind is the non-streamed chat call of callKinds.
func chatKind() callKind { return callKinds()[0] }

// TestRetryAmplificationUnderOutage: under a total outage the upstream sees at most 1 +
// the retry budget requests per logical call, and none once the breaker is open. The
// calls alternate between go-openai and openai-go with its own retries on: the SDK's
// retries add nothing.
func TestRetryAmplificationUnderOutage(t *testing.T) {
	r := newRig(t, false, func(rt *llmclient.Route) {
		rt.Policy.WindowSize, rt.Policy.MinimumCalls = 200, 100 // judge after a full burst
		rt.Policy.OpenDuration = time.Minute
	})
	defer verifyNone(t)
	defer r.close()
	r.primary.SetRules(llmtest.Rule{Fault: llmtest.Status(503)})
	calls := 0
	for range 3 {
		r.burstOf(chatKind())
		calls += burst
	}
	reqs := len(r.primary.Requests())
	const budget = 0.20 // breaker.DefaultBudgetPercent
	ratio := float64(reqs) / float64(calls)
	t.Logf("outage: %d calls, %d upstream requests, amplification %.3f", calls, reqs, ratio)
	if ratio > 1+budget+float64(breaker.DefaultMinRetryConcurrency)/float64(burst) {
		t.Errorf("amplification %.3f exceeds 1 + the retry budget", ratio)
	}
	if st := r.tr.State("/v1/chat/completions", hostOf(r.primary.URL)); st != breaker.StateOpen {
		t.Fatalf("breaker %v after %d failed calls, want open", st, calls)
	}
	before := len(r.primary.Requests())
	r.burstOf(chatKind())
	if after := len(r.primary.Requests()); after != before {
		t.Errorf("an open breaker let %d requests through", after-before)
	}
}

// TestBreakerOpensAndRecovers: the breaker opens within its window under an outage,
// and closes after recovery plus OpenDuration plus the half-open calls.
func TestBreakerOpensAndRecovers(t *testing.T) {
	const open = 300 * time.Millisecond
	r := newRig(t, true, func(rt *llmclient.Route) {
		rt.Policy.WindowSize, rt.Policy.MinimumCalls, rt.Policy.HalfOpenCalls = 10, 10, 2
		rt.Policy.OpenDuration = open
		rt.Policy.MaxAttempts = 1
	})
	defer verifyNone(t)
	defer r.close()
	host := hostOf(r.primary.URL)
	r.primary.SetRules(llmtest.Rule{Fault: llmtest.EnvoyNoHealthyUpstream()})
	for i := 1; i <= 10; i++ {
		if _, res := r.call(chatKind(), i); res.err != nil || res.servedBy() == "" {
			t.Fatalf("call %d during the outage: err %v, served by %q, want the fallback", i, res.err, res.servedBy())
		}
	}
	if st := r.tr.State("/v1/chat/completions", host); st != breaker.StateOpen {
		t.Fatalf("breaker %v after a full window of failures, want open", st)
	}
	if n := len(r.primary.Requests()); n != 10 {
		t.Errorf("%d requests reached the primary before the breaker opened, want the window's 10", n)
	}
	r.primary.SetRules() // recovery
	time.Sleep(open + 50*time.Millisecond)
	for i := range 2 { // the half-open trial calls
		if _, res := r.call(chatKind(), i); res.err != nil || res.servedBy() != "" || !res.complete() {
			t.Fatalf("trial call %d: err %v, served by %q, end %q: want the primary's answer", i, res.err, res.servedBy(), res.end)
		}
	}
	if st := r.tr.State("/v1/chat/completions", host); st != breaker.StateClosed {
		t.Errorf("breaker %v after recovery, OpenDuration and the trial calls, want closed", st)
	}
}
