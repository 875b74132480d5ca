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

// TestCanary runs the migration with short phases: no call fails, testers always reach
// v2, the shares follow the weights, and the table prints.
func TestCanary(t *testing.T) {
	var out bytes.Buffer
	rows, err := run(context.Background(), &out, options{phase: 300 * time.Millisecond, workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(phases) {
		t.Fatalf("%d rows", len(rows))
	}
	for i, r := range rows {
		if r.errors != 0 || r.calls == 0 {
			t.Errorf("%s: %d errors in %d calls: %v", r.phase, r.errors, r.calls, r.failures[:min(8, len(r.failures))])
		}
		if r.toV2 != r.testers {
			t.Errorf("%s: %d of %d testers' calls reached v2", r.phase, r.toV2, r.testers)
		}
		// Calls that neither a rule nor a session decides follow the weights.
		if got, want := float64(r.plainV2)/float64(r.plain), float64(phases[i].v2)/100; got < want-0.05 || got > want+0.05 {
			t.Errorf("%s: the split sent %.0f%% to v2", r.phase, got*100)
		}
	}
	if last := rows[len(rows)-1]; last.byVersion["v1"] != 0 {
		t.Errorf("0/100: %d calls still reached v1", last.byVersion["v1"])
	}
	if !strings.Contains(out.String(), "testers on v2") {
		t.Errorf("table:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}
