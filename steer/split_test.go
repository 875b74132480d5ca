package steer_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/infermesh/infermesh/steer"
)

// The weighted split is exact, not statistical: over 2,000 picks each
// backend's count is within one call of its share, every run.
func TestWeightedSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		backends []steer.Backend
		want     map[string]int // per 2,000 picks
	}{
		{"90/10", backends("v1", 90, "v2", 10), map[string]int{"v1": 1800, "v2": 200}},
		{"70/30", backends("v1", 70, "v2", 30), map[string]int{"v1": 1400, "v2": 600}},
		{"20/80", backends("v1", 20, "v2", 80), map[string]int{"v1": 400, "v2": 1600}},
		{"0/100", backends("v1", 0, "v2", 100), map[string]int{"v2": 2000}},
		{"1/1/2", backends("a", 1, "b", 1, "c", 2), map[string]int{"a": 500, "b": 500, "c": 1000}},
		{"9/1 as 90/10", backends("v1", 9, "v2", 1), map[string]int{"v1": 1800, "v2": 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := mustNew(t, steer.Config{Backends: tt.backends})
			got := count(t, r, 2000, steer.Request{})
			for name, want := range tt.want {
				if d := got[name] - want; d < -1 || d > 1 {
					t.Errorf("%s took %d of 2000 picks, want %d±1 (all: %v)", name, got[name], want, got)
				}
			}
			for name := range got {
				if _, ok := tt.want[name]; !ok {
					t.Errorf("%s took %d picks, want none", name, got[name])
				}
			}
		})
	}
}

// The split is smooth: at 90/10 the minor backend's calls are spread out,
// never two in a row, and one in every ten.
func TestWeightedSplitIsSmooth(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("v1", 90, "v2", 10)})
	for window := range 20 {
		got := count(t, r, 10, steer.Request{})
		if got["v2"] != 1 {
			t.Fatalf("window %d of 10 picks: %v, want exactly one v2", window, got)
		}
	}
}

func TestWeightedSplitReason(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("v1", 1)})
	if c := pick(t, r, steer.Request{}); c != (steer.Choice{Backend: "v1", Reason: steer.ReasonWeighted}) {
		t.Errorf("Pick = %+v", c)
	}
}

func TestRules(t *testing.T) {
	t.Parallel()
	cfg := steer.Config{
		Backends: backends("v1", 90, "v2", 10, "azure", 0, "vllm", 0),
		Rules: []steer.Rule{
			{Header: "x-canary-user", Exact: "true", Backend: "v2"},
			{Header: "x-tenant", Prefix: "eu-", Backend: "azure"},
			{Header: "x-tenant", Exact: "eu-lab", Backend: "vllm"}, // shadowed by the prefix rule
			{Header: "x-tenant", Exact: "lab", Backend: "vllm"},
		},
	}
	tests := []struct {
		name   string
		header []string
		want   string // "" = the split decides
	}{
		{"exact", []string{"x-canary-user", "true"}, "v2"},
		{"exact is exact", []string{"x-canary-user", "truex"}, ""},
		{"exact is case-sensitive", []string{"x-canary-user", "True"}, ""},
		{"prefix", []string{"x-tenant", "eu-acme"}, "azure"},
		{"prefix alone", []string{"x-tenant", "eu-"}, "azure"},
		{"first match wins", []string{"x-tenant", "eu-lab"}, "azure"},
		{"later rule", []string{"x-tenant", "lab"}, "vllm"},
		{"no prefix match", []string{"x-tenant", "us-acme"}, ""},
		{"first rule first", []string{"x-tenant", "lab", "x-canary-user", "true"}, "v2"},
		{"no headers", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := mustNew(t, cfg)
			req := steer.Request{Header: headers(tt.header...)}
			if tt.header == nil {
				req.Header = nil
			}
			got := count(t, r, 1000, req)
			if tt.want != "" {
				if got[tt.want] != 1000 {
					t.Errorf("picks = %v, want all 1000 on %s", got, tt.want)
				}
				if c := pick(t, r, req); c.Reason != steer.ReasonRule {
					t.Errorf("Reason = %q, want %q", c.Reason, steer.ReasonRule)
				}
				return
			}
			if got["v1"] != 900 || got["v2"] != 100 {
				t.Errorf("picks = %v, want the 90/10 split", got)
			}
		})
	}
}

// A rule's backend that is excluded (the hedge of a canary tester's call) or
// unhealthy does not take the call: the next rule, then the split, decides.
func TestRuleSkipsUnavailableBackend(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{
		Backends: backends("v1", 1, "v2", 0, "v3", 0),
		Rules: []steer.Rule{
			{Header: "x-canary-user", Exact: "true", Backend: "v2"},
			{Header: "x-canary-user", Prefix: "t", Backend: "v3"},
		},
	})
	h := headers("x-canary-user", "true")
	c := pick(t, r, steer.Request{Header: h, Exclude: []string{"v2"}})
	if c.Backend != "v3" || c.Reason != steer.ReasonRule {
		t.Errorf("v2 excluded: Pick = %+v, want v3 by the second rule", c)
	}
	c = pick(t, r, steer.Request{Header: h, Exclude: []string{"v2", "v3"}})
	if c.Backend != "v1" || c.Reason != steer.ReasonWeighted {
		t.Errorf("v2 and v3 excluded: Pick = %+v, want v1 by the split", c)
	}
	c = pick(t, r, steer.Request{Header: h, Healthy: newHealth("v2").healthy})
	if c.Backend != "v3" {
		t.Errorf("v2 unhealthy: Pick = %+v, want v3", c)
	}
}

// A weight-0 backend takes no weighted traffic and no sessions but stays
// reachable by its rule.
func TestZeroWeightReachableByRule(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{
		Backends: backends("v1", 1, "v2", 0),
		Rules:    []steer.Rule{{Header: "x-canary-user", Exact: "true", Backend: "v2"}},
	})
	if got := count(t, r, 100, steer.Request{}); got["v1"] != 100 {
		t.Errorf("split: %v, want all on v1", got)
	}
	for i := range 100 {
		if c := pick(t, r, session(sessionID(i))); c.Backend != "v1" {
			t.Fatalf("session %d went to %s", i, c.Backend)
		}
	}
	if got := count(t, r, 100, steer.Request{Header: headers("x-canary-user", "true")}); got["v2"] != 100 {
		t.Errorf("rule: %v, want all on v2", got)
	}
}

func TestExclude(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 1)})
	got := count(t, r, 300, steer.Request{Exclude: []string{"b", "unknown"}})
	if got["b"] != 0 || got["a"] != 150 || got["c"] != 150 {
		t.Errorf("picks excluding b = %v, want a and c 150 each", got)
	}
	_, done, err := r.Pick(steer.Request{Exclude: []string{"a", "b", "c"}})
	if !errors.Is(err, steer.ErrNoBackend) {
		t.Fatalf("all excluded: err = %v, want ErrNoBackend", err)
	}
	done() // a no-op, safe to call
}

// SetWeights applies to the very next Pick.
func TestSetWeightsAppliesToNextPick(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("v1", 90, "v2", 10)})
	for _, w := range []map[string]int{
		{"v1": 0, "v2": 100}, {"v1": 100, "v2": 0}, {"v2": 1, "v1": 0},
	} {
		if err := r.SetWeights(w); err != nil {
			t.Fatal(err)
		}
		want := "v1"
		if w["v1"] == 0 {
			want = "v2"
		}
		if c := pick(t, r, steer.Request{}); c.Backend != want {
			t.Errorf("after SetWeights(%v): Pick = %s, want %s", w, c.Backend, want)
		}
		if got := r.Weights(); got["v1"] != w["v1"] || got["v2"] != w["v2"] {
			t.Errorf("Weights() = %v after SetWeights(%v)", got, w)
		}
	}
}

func TestSetWeightsKeepsOthers(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 2, "c", 3)})
	if err := r.SetWeights(map[string]int{"b": 5}); err != nil {
		t.Fatal(err)
	}
	if got := r.Weights(); got["a"] != 1 || got["b"] != 5 || got["c"] != 3 || len(got) != 3 {
		t.Errorf("Weights() = %v, want a:1 b:5 c:3", got)
	}
}

// Eight pickers (some with sessions, some hedging) run while the weights swap
// between 90/10 and 0/100: no Pick fails, and the swapper's own Pick after
// each swap to 0/100 lands on v2.
func TestSetWeightsUnderConcurrentPicks(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("v1", 90, "v2", 10)})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for k := range 3000 {
				var req steer.Request
				switch k % 3 {
				case 1:
					req = session(sessionID(g*10 + k%10))
				case 2:
					req.Exclude = []string{"v1"}
				}
				_, done, err := r.Pick(req)
				if err != nil {
					errs <- err
					return
				}
				done()
			}
		})
	}
	for range 300 {
		if err := r.SetWeights(map[string]int{"v1": 90, "v2": 10}); err != nil {
			t.Fatal(err)
		}
		if err := r.SetWeights(map[string]int{"v1": 0, "v2": 100}); err != nil {
			t.Fatal(err)
		}
		for _, req := range []steer.Request{{}, session("s")} {
			if c := pick(t, r, req); c.Backend != "v2" {
				t.Fatalf("Pick after the swap to 0/100 = %+v, want v2", c)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Pick failed during the swaps: %v", err)
	}
}

// A migration 90/10 → 70/30 → 20/80 → 0/100 with half the calls of each step
// still in flight at the next: every Pick succeeds and each step's split is
// its weights'.
func TestMigrationWithCallsInFlight(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("v1", 90, "v2", 10)})
	var open []func()
	for _, v2 := range []int{10, 30, 80, 100} {
		if err := r.SetWeights(map[string]int{"v1": 100 - v2, "v2": v2}); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for k := range 2000 {
			c, done, err := r.Pick(steer.Request{})
			if err != nil {
				t.Fatalf("v2 at %d%%: Pick: %v", v2, err)
			}
			got[c.Backend]++
			if k%2 == 0 {
				open = append(open, done)
			} else {
				done()
			}
		}
		if want := v2 * 20; got["v2"] < want-1 || got["v2"] > want+1 {
			t.Errorf("v2 at %d%%: picks %v, want v2 %d±1", v2, got, want)
		}
	}
	for _, done := range open {
		done()
	}
}

// Setting weights between every pick (a control loop that sets the same
// weights again and again) keeps the split: the round-robin goes on from
// where it was.
func TestSetWeightsKeepsSplitPosition(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("v1", 90, "v2", 10)})
	got := map[string]int{}
	for range 2000 {
		if err := r.SetWeights(map[string]int{"v1": 90, "v2": 10}); err != nil {
			t.Fatal(err)
		}
		got[pick(t, r, steer.Request{}).Backend]++
	}
	if got["v2"] < 199 || got["v2"] > 201 {
		t.Errorf("picks %v with SetWeights before each, want v2 200±1", got)
	}
}
