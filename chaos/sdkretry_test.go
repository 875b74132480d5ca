package chaos_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/internal/sdkerr"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// countingTransport counts the tries the caller's SDK makes.
type countingTransport struct {
	next  http.RoundTripper
	tries atomic.Int32
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.tries.Add(1)
	return c.next.RoundTrip(req)
}

// sdkRetryRow is one cell of TestSDKRetriesNeverMultiply's table.
type sdkRetryRow struct {
	tries, upstream, attempts int
	header, got               string
}

func (r sdkRetryRow) String() string {
	return fmt.Sprintf("%d · %d/%d · %s · %s", r.tries, r.upstream, r.attempts, r.header, r.got)
}

// TestSDKRetriesNeverMultiply: for every fault kind, as the upstream's persistent
// behaviour, one logical call through openai-go left on its default retries (2), chat and
// Responses, streamed and not, reaches the upstream no more often than infermesh's own
// attempts for its route: the SDK's retries of a failure infermesh already judged never
// reach the upstream. Where a response came back, its X-Infermesh-Attempts equals the
// upstream requests, and no upstream request is an SDK retry (X-Stainless-Retry-Count 0).
// It runs in a synctest bubble over llmtest's in-memory transport, so the SDK's retry waits
// and infermesh's timers take no real time. It logs the table: per fault and call, the
// SDK's tries · upstream requests / the route's attempts · X-Infermesh-Attempts · what
// the caller got.
func TestSDKRetriesNeverMultiply(t *testing.T) {
	kinds := callKinds()
	var table strings.Builder
	table.WriteString("| fault |")
	for _, ck := range kinds {
		table.WriteString(" " + ck.name + " |")
	}
	table.WriteString("\n|---|" + strings.Repeat("---|", len(kinds)) + "\n")
	for _, f := range faults() {
		table.WriteString("| " + f.name + " |")
		for _, ck := range kinds {
			var row sdkRetryRow
			t.Run(f.name+"/"+ck.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { row = oneSDKCall(t, f.fault, ck) })
			})
			table.WriteString(" " + row.String() + " |")
		}
		table.WriteString("\n")
	}
	t.Logf("openai-go with its default retries; each cell: SDK tries · upstream requests / route attempts · X-Infermesh-Attempts · what the caller got\n%s", table.String())
}

// oneSDKCall makes the call ck through openai-go against an upstream that always answers
// with fault f, checks that the SDK did not multiply infermesh's attempts, and returns
// the table row.
func oneSDKCall(t *testing.T, f llmtest.Fault, ck callKind) sdkRetryRow {
	srv := llmtest.NewUnstartedServer(primaryOptions()...)
	defer srv.Close()
	srv.SetRules(llmtest.Rule{Fault: f})
	cfg := llmclient.Config{Base: srv.Transport(), MaxResponseBytes: maxBody, MaxEventBytes: maxBody}
	shortRoutes(&cfg, 2*time.Second, llmclient.StreamPolicy{FirstTokenTimeout: time.Second, IdleTimeout: time.Second},
		func(rt *llmclient.Route) { rt.Policy.Timeout = 10 * time.Second })
	tr, err := llmclient.NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	counted := &countingTransport{next: tr}
	c := newClients(llmtest.InMemoryURL, &http.Client{Transport: counted}) // openai-go's defaults

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := ck.openAIGo(ctx, c)
	reqs := srv.Requests()
	row := sdkRetryRow{tries: int(counted.tries.Load()), upstream: len(reqs),
		attempts: cfg.Route(ck.route).Policy.MaxAttempts, header: "-", got: "success"}
	switch {
	case res.err != nil:
		row.got = sdkerr.Kind(res.err)
		if row.got == "" {
			t.Errorf("untyped error %T: %v", res.err, res.err)
			row.got = fmt.Sprintf("untyped %T", res.err)
		}
	case res.failedResponse():
		row.got = "response.failed event"
	case !res.complete():
		t.Errorf("no error, but the answer ended without its end (%q)", res.end)
		row.got = "cut without an error"
	}
	if row.upstream > row.attempts {
		t.Errorf("%d upstream requests for one call, beyond the route's %d attempts: the SDK's %d tries multiplied them",
			row.upstream, row.attempts, row.tries)
	}
	for _, q := range reqs {
		if n := q.Header.Get("X-Stainless-Retry-Count"); n != "0" {
			t.Errorf("upstream request %d is the SDK's retry %q", q.Seq, n)
		}
	}
	if h := res.header.Get(llmclient.HeaderAttempts); h != "" {
		row.header = h
		if n, err := strconv.Atoi(h); err != nil || n != row.upstream {
			t.Errorf("%s %q, but the upstream saw %d requests", llmclient.HeaderAttempts, h, row.upstream)
		}
	}
	return row
}
