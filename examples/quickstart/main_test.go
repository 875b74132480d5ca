package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestQuickstart runs the demo with short phases: every call must end as a success, a
// marked fallback or a typed error, the outage must be served by the fallback, and the
// table must print.
func TestQuickstart(t *testing.T) {
	var out bytes.Buffer
	o := options{model: "gpt-4o-mini", phase: 1200 * time.Millisecond, workers: 4}
	rows, err := demo(context.Background(), &out, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(timeline) {
		t.Fatalf("%d rows, want %d", len(rows), len(timeline))
	}
	for _, r := range rows {
		if r.calls == 0 || r.ok+r.fallback+r.failed != r.calls {
			t.Errorf("%s: %d calls, %d+%d+%d accounted for", r.phase, r.calls, r.ok, r.fallback, r.failed)
		}
		if r.failed != 0 {
			t.Errorf("%s: %d calls failed: %v", r.phase, r.failed, r.failures)
		}
	}
	healthy, outage, recovery := rows[0], rows[2], rows[3]
	if healthy.ok != healthy.calls {
		t.Errorf("healthy: %d of %d succeeded on the primary", healthy.ok, healthy.calls)
	}
	if outage.fallback != outage.calls {
		t.Errorf("outage: %d of %d served by the fallback", outage.fallback, outage.calls)
	}
	if recovery.ok == 0 || !strings.Contains(recovery.transitions, "closed") {
		t.Errorf("recovery: %d on the primary, breaker %q; want it closed again", recovery.ok, recovery.transitions)
	}

	var table bytes.Buffer
	printTable(&table, rows)
	for _, want := range []string{"phase", "succeeded", "fallback", "p99", "retries", "breaker entered", "tokens", "healthy", "brownout", "outage", "recovery"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}
