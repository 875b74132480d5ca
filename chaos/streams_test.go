package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
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
func requestsByCall(reqs []llmtest.Request) map[string][]llmtest.Request {
	out := map[string][]llmtest.Request{}
	for _, q := range reqs { // Requests returns them in arrival order
		if id := q.Header.Get(callIDKey); id != "" {
			out[id] = append(out[id], q)
		}
	}
	return out
}

// describe lists requests for a failure message: arrival number, attempt number, time
// since start, and the SDK's retry count.
func describe(reqs []llmtest.Request, start time.Time) string {
	var b strings.Builder
	for _, q := range reqs {
		fmt.Fprintf(&b, " #%d (attempt %s, read at %v, SDK try %q)", q.Seq, q.Header.Get(attemptKey),
			q.Time.Sub(start).Round(time.Millisecond), q.Header.Get("X-Stainless-Retry-Count"))
	}
	return b.String()
}

// TestStreamsNeverRetriedAfterContent: for bursts of streams that fail just after their
// first output, every fault kind that can strike there, chat and Responses: once output of
// an attempt has reached the caller, infermesh sends no other attempt of that call, to the
// primary or to a fallback, whatever the scheduling; the caller's stream ends with a typed
// error that counts the output it got (or with the upstream's own response.failed). Before
// any output an attempt may fail (a first-token timeout on a slow machine) and be retried,
// within the route's attempts. Each call carries an id of its own and each attempt its
// number, which the upstream records with every request; the caller records which
// upstream request each chunk came from.
func TestStreamsNeverRetriedAfterContent(t *testing.T) {
	for _, f := range []llmtest.Fault{llmtest.ResetAfter(1), llmtest.StallAfter(1, 0), llmtest.ErrorEvent(1),
		llmtest.MalformedJSON(1), llmtest.Truncate(1), llmtest.ResponseFailed(1), llmtest.Oversized(oversize),
		llmtest.GzipBomb(bombDecoded)} {
		f.AfterChunks = 1
		f = f.CountingOutput() // just after the first output, on every route
		for _, ck := range streamKinds() {
			t.Run(f.Kind.String()+"/"+ck.name, func(t *testing.T) { streamsAfterOutput(t, f, ck) })
		}
	}
}

// streamsAfterOutput runs one case of TestStreamsNeverRetriedAfterContent.
func streamsAfterOutput(t *testing.T, f llmtest.Fault, ck callKind) {
	r := newRig(t, true, func(rt *llmclient.Route) {
		// Time enough for the first output on a loaded machine: the test is about what
		// happens after it.
		rt.Stream.FirstTokenTimeout = 2 * time.Second
	})
	r.primary.SetRules(llmtest.Rule{Fault: f})
	probe := startProbe()
	replies := r.burstOf(ck)
	late := slackUnder(probe.end())
	primary, local := requestsByCall(r.primary.Requests()), requestsByCall(r.local.Requests())
	r.close()
	verifyNone(t)
	delivered, before, reordered := 0, &tally{}, 0
	for id, res := range replies {
		if checkAfterOutput(t, id, res, f, r.sent.attempts(id), primary[id], local[id], r.attempts(ck), late) {
			delivered++
		} else {
			before.addReply(res, late)
		}
		if !slices.IsSortedFunc(primary[id], func(a, b llmtest.Request) int { return attemptOf(a) - attemptOf(b) }) {
			reordered++
		}
	}
	if delivered == 0 {
		t.Fatal("no stream delivered output: the test proved nothing")
	}
	t.Logf("%d of %d streams delivered output before failing; the rest failed before it: fallback %d%s; "+
		"%d calls' attempts read by the server out of order",
		delivered, len(replies), before.counts[servedByFallback], before.kindsLine(), reordered)
}

// attemptOf returns the number of the attempt q is (0 if it has none).
func attemptOf(q llmtest.Request) int {
	n, _ := strconv.Atoi(q.Header.Get(attemptKey))
	return n
}

// checkAfterOutput checks one call of TestStreamsNeverRetriedAfterContent: sent is the
// number of attempts infermesh sent to the primary, primary and local the call's requests
// each server read, late the time the call may take past its deadline. It reports
// whether output of the primary reached the caller.
func checkAfterOutput(t *testing.T, id string, res reply, f llmtest.Fault, sent int, primary, local []llmtest.Request, attempts int, late time.Duration) bool {
	t.Helper()
	if sent > attempts {
		t.Errorf("call %s: %d attempts sent to the primary, beyond the route's %d", id, sent, attempts)
	}
	if o, note := judge(res, late); o == lost {
		t.Errorf("call %s: lost: %s", id, note)
	}
	if res.firstOutput == 0 || res.servedBy() != "" {
		return false // no output of the primary: retries and the fallback were allowed
	}
	i := slices.IndexFunc(primary, func(q llmtest.Request) bool { return q.Seq == res.firstOutput })
	if i < 0 {
		t.Errorf("call %s: output from request %d, not one of the call's:%s", id, res.firstOutput, describe(primary, res.start))
	} else if n := attemptOf(primary[i]); n != sent {
		t.Errorf("call %s (%s): output of attempt %d reached the caller, but infermesh sent %d attempts:%s; outputs %d, err %v",
			id, res.sdk, n, sent, describe(primary, res.start), res.outputs, res.err)
	}
	if len(local) > 0 {
		t.Errorf("call %s: output of the primary reached the caller, and the fallback got %d requests", id, len(local))
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
				do, sdk := ck.sdk(n)
				start := time.Now()
				res := do(ctx, c)
				took := time.Since(start)
				limit := r.cfg.Route(ck.route).Policy.Timeout
				if res.err != nil || !res.complete() || res.outputs != chunks || took < limit {
					t.Errorf("%s (%s): %d outputs in %v, end %q, err %v; want all %d, whole, over more than the route's %v limit",
						ck.name, sdk, res.outputs, took, res.end, res.err, chunks, limit)
				}
			})
		}
	}
	wg.Wait()
}
