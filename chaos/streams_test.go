package chaos_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// streamKinds are the streamed calls of callKinds.
func streamKinds() []callKind {
	var out []callKind
	for _, ck := range callKinds() {
		if ck.stream {
			out = append(out, ck)
		}
	}
	return out
}

// requestsByCall groups a server's requests by the call id they carry, each call's in
// arrival order.
func requestsByCall(reqs []llmtest.Request) map[string][]int {
	out := map[string][]int{}
	for _, q := range reqs { // Requests returns them in arrival order
		if id := q.Header.Get(callIDKey); id != "" {
			out[id] = append(out[id], q.Seq)
		}
	}
	return out
}

// TestStreamsNeverRetriedAfterContent: for bursts of streams that fail just after their
// first output, every fault kind that can strike there, chat and Responses: once output of
// an upstream request has reached the caller, no request of that call is sent again, to
// the primary or to a fallback, whatever the scheduling; the caller's stream ends with a
// typed error that counts the output it got (or with the upstream's own response.failed).
// Before any output an attempt may fail (a first-token timeout on a slow machine) and be
// retried, within the route's attempts. Each call carries an id of its own, which the
// upstream records with every request, and the caller records which upstream request
// each chunk came from.
func TestStreamsNeverRetriedAfterContent(t *testing.T) {
	for _, f := range []llmtest.Fault{llmtest.ResetAfter(1), llmtest.StallAfter(1, 0), llmtest.ErrorEvent(1),
		llmtest.MalformedJSON(1), llmtest.Truncate(1), llmtest.ResponseFailed(1), llmtest.Oversized(oversize),
		llmtest.GzipBomb(bombDecoded)} {
		f.AfterChunks = 1
		f = f.CountingOutput() // just after the first output, on every route
		for _, ck := range streamKinds() {
			t.Run(f.Kind.String()+"/"+ck.name, func(t *testing.T) {
				r := newRig(t, true, func(rt *llmclient.Route) {
					// Time enough for the first output on a loaded machine: the test is
					// about what happens after it.
					rt.Stream.FirstTokenTimeout = 2 * time.Second
				})
				r.primary.SetRules(llmtest.Rule{Fault: f})
				probe := startProbe()
				replies := r.burstOf(ck)
				late := slackUnder(probe.end())
				primary, local := requestsByCall(r.primary.Requests()), requestsByCall(r.local.Requests())
				r.close()
				verifyNone(t)
				delivered, before := 0, &tally{}
				for id, res := range replies {
					if checkAfterOutput(t, id, res, f, primary[id], local[id], r.attempts(ck), late) {
						delivered++
					} else {
						before.addReply(res, late)
					}
				}
				if delivered == 0 {
					t.Fatal("no stream delivered output: the test proved nothing")
				}
				t.Logf("%d of %d streams delivered output before failing; the rest failed before it: fallback %d%s",
					delivered, len(replies), before.counts[servedByFallback], before.kindsLine())
			})
		}
	}
}

// checkAfterOutput checks one call of TestStreamsNeverRetriedAfterContent; primary and
// local are its requests to each server, late the time it may take past its deadline.
// It reports whether output of the primary reached the caller.
func checkAfterOutput(t *testing.T, id string, res reply, f llmtest.Fault, primary, local []int, attempts int, late time.Duration) bool {
	t.Helper()
	if len(primary) > attempts {
		t.Errorf("call %s: %d requests to the primary, beyond the route's %d attempts", id, len(primary), attempts)
	}
	if o, note := judge(res, late); o == lost {
		t.Errorf("call %s: lost: %s", id, note)
	}
	if res.firstOutput == 0 || res.servedBy() != "" {
		return false // no output of the primary: retries and the fallback were allowed
	}
	switch last := primary[len(primary)-1]; {
	case !slices.Contains(primary, res.firstOutput):
		t.Errorf("call %s: output from request %d, not one of the call's %v", id, res.firstOutput, primary)
	case res.firstOutput != last:
		t.Errorf("call %s: output of request %d reached the caller, then request %d was sent", id, res.firstOutput, last)
	}
	if len(local) > 0 {
		t.Errorf("call %s: output of the primary reached the caller, then the fallback got %d requests", id, len(local))
	}
	var se *llmclient.StreamError
	switch {
	case f.Kind == llmtest.KindResponseFailed && res.failedResponse() && res.err == nil:
		// The upstream's own terminal event, delivered as it came.
	case !errors.As(res.err, &se):
		t.Errorf("call %s: after %d outputs, err %v (end %q): want a *llmclient.StreamError", id, res.outputs, res.err, res.end)
	case se.Chunks != res.outputs:
		t.Errorf("call %s: the StreamError counts %d chunks, the caller got %d", id, se.Chunks, res.outputs)
	}
	return true
}

// TestLongHealthyStreamNotCut: a stream that outlives every per-try and overall limit of
// its route, but keeps producing chunks, is delivered whole, chat and Responses, through
// either SDK, over the real pooled transport (whose own limits must not cut it either).
// The stream's own first-token and idle timeouts are far above what a healthy stream
// needs even on a loaded machine: only the route's limits could cut it.
func TestLongHealthyStreamNotCut(t *testing.T) {
	const chunks, interval = 60, 20 * time.Millisecond
	r := newRig(t, false, func(rt *llmclient.Route) {
		rt.Policy.Timeout, rt.Policy.PerTryTimeout = 500*time.Millisecond, 250*time.Millisecond
		rt.Stream = llmclient.StreamPolicy{FirstTokenTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
	})
	defer verifyNone(t)
	defer r.close()
	long := llmtest.NewServer(llmtest.WithChunks(chunks, "t "), llmtest.WithChunkInterval(llmtest.Fixed(interval)))
	defer long.Close()
	c := newClients(long.URL, &http.Client{Transport: r.tr})
	var wg sync.WaitGroup
	for _, ck := range streamKinds() {
		for n := range 2 { // both SDKs
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				start := time.Now()
				res := ck.sdk(n)(ctx, c)
				took := time.Since(start)
				limit := r.cfg.Route(ck.route).Policy.Timeout
				if res.err != nil || !res.complete() || res.outputs != chunks || took < limit {
					t.Errorf("%s (sdk %d): %d outputs in %v, end %q, err %v; want all %d, whole, over more than the route's %v limit",
						ck.name, n, res.outputs, took, res.end, res.err, chunks, limit)
				}
			})
		}
	}
	wg.Wait()
}
