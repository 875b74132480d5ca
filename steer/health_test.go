package steer_test

import (
	"errors"
	"testing"

	"github.com/infermesh/infermesh/steer"
)

// Unhealthy backends are skipped while at least MinHealthyPercent of the
// backends are healthy; below that, health is ignored and the split covers
// every backend again.
func TestMinHealthyPercent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		minHealthy float64
		unhealthy  []string
		want       map[string]int // per 400 picks; nil = ErrNoBackend
		ignored    bool
	}{
		{"default, all healthy", 0, nil, map[string]int{"a": 100, "b": 100, "c": 100, "d": 100}, false},
		{"default, one down", 0, []string{"b"}, map[string]int{"a": 133, "c": 133, "d": 133}, false},
		{"default, one left", 0, []string{"a", "b", "c"}, map[string]int{"d": 400}, false},
		{"default, none left", 0, []string{"a", "b", "c", "d"}, nil, false},
		{"50, half healthy", 50, []string{"a", "b"}, map[string]int{"c": 200, "d": 200}, false},
		{"50, a quarter healthy", 50, []string{"a", "b", "c"}, map[string]int{"a": 100, "b": 100, "c": 100, "d": 100}, true},
		{"50, none healthy", 50, []string{"a", "b", "c", "d"}, map[string]int{"a": 100, "b": 100, "c": 100, "d": 100}, true},
		{"1, one left", 1, []string{"a", "b", "c"}, map[string]int{"d": 400}, false},
		{"1, none left", 1, []string{"a", "b", "c", "d"}, map[string]int{"a": 100, "b": 100, "c": 100, "d": 100}, true},
		{"100, one down", 100, []string{"a"}, map[string]int{"a": 100, "b": 100, "c": 100, "d": 100}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 1, "d", 1), MinHealthyPercent: tt.minHealthy})
			req := steer.Request{Healthy: newHealth(tt.unhealthy...).healthy}
			if tt.want == nil {
				if _, _, err := r.Pick(req); !errors.Is(err, steer.ErrNoBackend) {
					t.Fatalf("Pick err = %v, want ErrNoBackend", err)
				}
				return
			}
			got := map[string]int{}
			for range 400 {
				c := pick(t, r, req)
				got[c.Backend]++
				if c.IgnoredHealth != tt.ignored {
					t.Fatalf("Choice = %+v, want IgnoredHealth %v", c, tt.ignored)
				}
			}
			for name, n := range got {
				if d := n - tt.want[name]; d < -1 || d > 1 {
					t.Errorf("picks = %v, want %v (±1)", got, tt.want)
					break
				}
			}
		})
	}
}

// The floor counts the backends that take a share (weight > 0); a backend
// that only rules reach does not count, excluded backends do.
func TestMinHealthyPercentPool(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "canary", 0), MinHealthyPercent: 50})
	h := newHealth("canary", "b")
	c := pick(t, r, steer.Request{Healthy: h.healthy})
	if c.Backend != "a" || c.IgnoredHealth {
		t.Errorf("one of two pool backends healthy: %+v, want a with health respected", c)
	}
	// A hedge of a call on a: a is excluded but still counts as healthy, so
	// health holds and no backend is left.
	if _, _, err := r.Pick(steer.Request{Healthy: h.healthy, Exclude: []string{"a"}}); !errors.Is(err, steer.ErrNoBackend) {
		t.Errorf("hedge with the only healthy backend excluded: err = %v, want ErrNoBackend", err)
	}
}

// Sessions follow the floor too: below it they stay on their (unhealthy)
// backend rather than crowd the healthy ones.
func TestMinHealthyPercentAffinity(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 1, "d", 1), MinHealthyPercent: 50})
	h := newHealth()
	home := homes(t, r, 400, h.healthy)
	h.set(true, "a", "b", "c")
	sameHomes(t, "with health ignored, and all healthy", homes(t, r, 400, h.healthy), home)
	h.set(false, "c")
	respecting := homes(t, r, 400, h.healthy)
	for i := range home {
		if b := respecting[i]; b == "a" || b == "b" {
			t.Fatalf("session %d went to unhealthy %s at 50%% healthy", i, b)
		}
	}
}

// Healthy is asked about each backend at most once per Pick.
func TestHealthyCalledOncePerBackend(t *testing.T) {
	t.Parallel()
	for _, cfg := range []steer.Config{
		{Backends: backends("a", 1, "b", 1, "c", 0), MinHealthyPercent: 50, Rules: []steer.Rule{{Header: "h", Exact: "x", Backend: "c"}}},
		{Backends: backends("a", 1, "b", 1), Balance: steer.LeastLoaded},
		{Backends: backends("a", 1, "b", 1)},
	} {
		r := mustNew(t, cfg)
		for _, hdr := range [][]string{nil, {"h", "x"}, {steer.DefaultAffinityHeader, "s"}} {
			calls := map[string]int{}
			req := steer.Request{
				Header:  headers(hdr...),
				Healthy: func(b string) bool { calls[b]++; return b != "c" },
			}
			pick(t, r, req)
			for b, n := range calls {
				if n > 1 {
					t.Errorf("%+v, headers %v: Healthy(%q) called %d times", cfg, hdr, b, n)
				}
			}
		}
	}
}

func TestLeastLoadedPrefersLessLoaded(t *testing.T) {
	t.Parallel()
	t.Run("two backends", func(t *testing.T) {
		t.Parallel()
		r := mustNew(t, steer.Config{
			Backends: backends("a", 1, "b", 1),
			Balance:  steer.LeastLoaded,
			Rules:    []steer.Rule{{Header: "pin", Exact: "a", Backend: "a"}},
		})
		for range 5 { // five calls held on a
			if _, _, err := r.Pick(steer.Request{Header: headers("pin", "a")}); err != nil {
				t.Fatal(err)
			}
		}
		for k := range 5 { // held too: b's load grows to a's
			c, _, err := r.Pick(steer.Request{})
			if err != nil || c.Backend != "b" || c.Reason != steer.ReasonLeastLoaded {
				t.Fatalf("pick %d with a at 5 and b at %d in flight: %+v, %v", k, k, c, err)
			}
		}
	})
	t.Run("three backends", func(t *testing.T) {
		t.Parallel()
		r := mustNew(t, steer.Config{
			Backends: backends("a", 1, "b", 1, "c", 1),
			Balance:  steer.LeastLoaded,
			Rules:    []steer.Rule{{Header: "pin", Exact: "a", Backend: "a"}},
		})
		if _, _, err := r.Pick(steer.Request{Header: headers("pin", "a")}); err != nil {
			t.Fatal(err)
		}
		got := count(t, r, 300, steer.Request{})
		if got["a"] != 0 || got["b"] == 0 || got["c"] == 0 {
			t.Errorf("a has a call in flight, b and c none: picks %v, want b and c only", got)
		}
	})
	t.Run("relative to weight", func(t *testing.T) {
		t.Parallel()
		r := mustNew(t, steer.Config{Backends: backends("big", 3, "small", 1), Balance: steer.LeastLoaded})
		load := map[string]int{}
		for range 400 { // held
			c, _, err := r.Pick(steer.Request{})
			if err != nil {
				t.Fatal(err)
			}
			load[c.Backend]++
		}
		if d := load["big"] - 3*load["small"]; d < -4 || d > 4 {
			t.Errorf("in flight %v, want big at three times small", load)
		}
	})
	t.Run("skips unhealthy", func(t *testing.T) {
		t.Parallel()
		r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 1), Balance: steer.LeastLoaded})
		got := count(t, r, 100, steer.Request{Healthy: newHealth("b").healthy, Exclude: []string{"c"}})
		if got["a"] != 100 {
			t.Errorf("picks %v, want all on a", got)
		}
	})
}
