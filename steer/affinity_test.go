package steer_test

import (
	"errors"
	"math"
	"testing"

	"github.com/infermesh/infermesh/steer"
)

// sameHomes fails the test if the sessions' backends differ between a and b.
func sameHomes(t *testing.T, what string, a, b []string) {
	t.Helper()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("session %d is on %s and %s, %s", i, a[i], b[i], what)
		}
	}
}

// homes returns the backend of each of n sessions, each picked alone.
func homes(t *testing.T, r *steer.Router, n int, healthy func(string) bool) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		req := session(sessionID(i))
		req.Healthy = healthy
		c := pick(t, r, req)
		if c.Reason != steer.ReasonAffinity {
			t.Fatalf("session %d: Reason = %q, want %q", i, c.Reason, steer.ReasonAffinity)
		}
		out[i] = c.Backend
	}
	return out
}

func TestAffinityKeepsSessionOnItsBackend(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 1)})
	seen := map[string]bool{}
	for s := range 10 {
		req := session(sessionID(s))
		first := pick(t, r, req).Backend
		seen[first] = true
		for k := range 1000 {
			if c := pick(t, r, req); c.Backend != first {
				t.Fatalf("session %d call %d went to %s, its first call to %s", s, k, c.Backend, first)
			}
		}
	}
	if len(seen) < 2 {
		t.Errorf("10 sessions all went to %v: the ring does not spread sessions", seen)
	}
}

// Sessions split roughly like the weights, since each backend's points on the
// ring are in proportion to its weight.
func TestAffinitySplitsSessionsLikeWeights(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		backends []steer.Backend
		minor    string
		share    float64
	}{
		{backends("v1", 90, "v2", 10), "v2", 0.10},
		{backends("v1", 50, "v2", 50), "v2", 0.50},
		{backends("a", 1, "b", 1, "c", 1, "d", 1), "d", 0.25},
	} {
		r := mustNew(t, steer.Config{Backends: tt.backends})
		got := 0
		for _, b := range homes(t, r, 2000, nil) {
			if b == tt.minor {
				got++
			}
		}
		t.Logf("%v: %s holds %d of 2000 sessions", tt.backends, tt.minor, got)
		if share := float64(got) / 2000; math.Abs(share-tt.share) > 0.05 {
			t.Errorf("%v: %s holds %.1f%% of 2000 sessions, want %.0f%%±5", tt.backends, tt.minor, 100*share, 100*tt.share)
		}
	}
}

// Adding a third backend moves only the sessions it takes (about a third),
// whether it is added at run time or the router is built with it: the ring is
// the same in every process that has the same backends.
func TestAffinityAddingBackendMovesFewSessions(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 0)})
	before := homes(t, r, 1000, nil)
	if err := r.SetWeights(map[string]int{"c": 1}); err != nil {
		t.Fatal(err)
	}
	after := homes(t, r, 1000, nil)
	moved := 0
	for i := range before {
		if before[i] == after[i] {
			continue
		}
		moved++
		if after[i] != "c" {
			t.Errorf("session %d moved from %s to %s, not to the new backend", i, before[i], after[i])
		}
	}
	t.Logf("%d of 1000 sessions moved to the new backend", moved)
	if moved > 400 || moved < 200 {
		t.Errorf("%d of 1000 sessions moved, want about a third (200 to 400)", moved)
	}
	fresh := homes(t, mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 1)}), 1000, nil)
	sameHomes(t, "on a new router with c, and after SetWeights", fresh, after)
}

// While a backend is unhealthy its sessions go elsewhere and the others stay
// put; when it recovers they come back.
func TestAffinityUnhealthyBackendSessionsMoveAndReturn(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 1)})
	h := newHealth()
	home := homes(t, r, 600, h.healthy)
	h.set(true, "b")
	during := homes(t, r, 600, h.healthy)
	onB := 0
	for i := range home {
		switch {
		case during[i] == "b":
			t.Fatalf("session %d went to unhealthy b", i)
		case home[i] == "b":
			onB++
		case during[i] != home[i]:
			t.Errorf("session %d moved from healthy %s to %s", i, home[i], during[i])
		}
	}
	if onB == 0 {
		t.Fatal("no session lived on b; the test proves nothing")
	}
	h.set(false, "b")
	sameHomes(t, "after b recovered, and before it failed", homes(t, r, 600, h.healthy), home)
}

// A hedge of a session's call (its backend excluded) goes to the next backend
// on the ring; the session's own calls stay home.
func TestAffinityExclude(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 1)})
	req := session("conversation-1")
	home := pick(t, r, req).Backend
	req.Exclude = []string{home}
	hedge := pick(t, r, req)
	if hedge.Backend == home || hedge.Reason != steer.ReasonAffinity {
		t.Errorf("hedge = %+v, home %s", hedge, home)
	}
	for range 100 {
		if c := pick(t, r, req); c.Backend != hedge.Backend {
			t.Fatalf("hedges of one session went to %s and %s", hedge.Backend, c.Backend)
		}
	}
}

// One hot session with many calls in flight fills its backend up to the
// bound, ceil(LoadFactor × (in flight + 1) / 3) with three equal backends,
// then spills to the next; it never pushes a backend past the bound while
// another has room.
func TestAffinityBoundedLoads(t *testing.T) {
	t.Parallel()
	for _, lf := range []float64{0, 1, 1.5, 2} {
		factor := lf
		if factor == 0 {
			factor = steer.DefaultLoadFactor
		}
		r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1, "c", 1), LoadFactor: lf})
		req := session("hot")
		home := pick(t, r, req).Backend
		load := map[string]int{}
		total, homeFull := 0, false
		for k := range 90 {
			bound := int(math.Ceil(factor * float64(total+1) / 3))
			c, _, err := r.Pick(req) // held: the calls stay in flight
			if err != nil {
				t.Fatal(err)
			}
			if load[home] < bound && c.Backend != home {
				t.Fatalf("LoadFactor %v, call %d: went to %s while home %s had %d < bound %d in flight", lf, k, c.Backend, home, load[home], bound)
			}
			if load[c.Backend]+1 > bound {
				t.Fatalf("LoadFactor %v, call %d: %s took its %d-th call, bound %d", lf, k, c.Backend, load[c.Backend]+1, bound)
			}
			homeFull = homeFull || c.Backend != home
			load[c.Backend]++
			total++
		}
		if !homeFull || load[home] < 30 {
			t.Errorf("LoadFactor %v: loads %v after 90 held calls: the session should fill its home first", lf, load)
		}
	}
}

// With a large LoadFactor, affinity ignores load.
func TestAffinityLargeLoadFactorIgnoresLoad(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1), LoadFactor: 1000})
	req := session("hot")
	home := pick(t, r, req).Backend
	for k := range 200 {
		if c, _, _ := r.Pick(req); c.Backend != home {
			t.Fatalf("call %d went to %s, home %s", k, c.Backend, home)
		}
	}
}

func TestAffinityHeader(t *testing.T) {
	t.Parallel()
	t.Run("custom", func(t *testing.T) {
		t.Parallel()
		r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1), AffinityHeader: "x-conversation"})
		if c := pick(t, r, steer.Request{Header: headers("x-conversation", "c1")}); c.Reason != steer.ReasonAffinity {
			t.Errorf("custom header: Reason = %q", c.Reason)
		}
		if c := pick(t, r, session("c1")); c.Reason != steer.ReasonWeighted {
			t.Errorf("default header with a custom one set: Reason = %q", c.Reason)
		}
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1), AffinityHeader: steer.NoAffinity})
		if got := count(t, r, 100, session("c1")); got["a"] != 50 || got["b"] != 50 {
			t.Errorf("affinity off: picks %v, want the split", got)
		}
	})
	t.Run("empty value", func(t *testing.T) {
		t.Parallel()
		r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1)})
		if c := pick(t, r, session("")); c.Reason != steer.ReasonWeighted {
			t.Errorf("empty session: Reason = %q", c.Reason)
		}
	})
	t.Run("rules first", func(t *testing.T) {
		t.Parallel()
		r := mustNew(t, steer.Config{
			Backends: backends("a", 1, "b", 1),
			Rules:    []steer.Rule{{Header: "x-canary-user", Exact: "true", Backend: "b"}},
		})
		for i := range 100 {
			req := steer.Request{Header: headers("x-canary-user", "true", steer.DefaultAffinityHeader, sessionID(i))}
			if c := pick(t, r, req); c.Backend != "b" || c.Reason != steer.ReasonRule {
				t.Fatalf("session %d with the canary header: %+v", i, c)
			}
		}
	})
}

func TestAffinityNoBackend(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("a", 1, "b", 1)})
	req := session("s")
	req.Exclude = []string{"a", "b"}
	if _, _, err := r.Pick(req); !errors.Is(err, steer.ErrNoBackend) {
		t.Errorf("err = %v, want ErrNoBackend", err)
	}
}

// Shifting weights from v1 to v2 moves sessions from v1 to v2 only, never
// back, and each step moves the sessions to v2 in step with the weights.
func TestAffinityShiftMovesSessionsOneWay(t *testing.T) {
	t.Parallel()
	r := mustNew(t, steer.Config{Backends: backends("v1", 90, "v2", 10)})
	before := homes(t, r, 1000, nil)
	for _, v2 := range []int{30, 80, 100} {
		if err := r.SetWeights(map[string]int{"v1": 100 - v2, "v2": v2}); err != nil {
			t.Fatal(err)
		}
		after := homes(t, r, 1000, nil)
		onV2 := 0
		for i := range after {
			if before[i] == "v2" && after[i] == "v1" {
				t.Fatalf("at %d%% for v2, session %d moved back from v2 to v1", v2, i)
			}
			if after[i] == "v2" {
				onV2++
			}
		}
		if share := onV2 / 10; share < v2-8 || share > v2+8 {
			t.Errorf("at %d%% for v2, v2 holds %d%% of the sessions", v2, share)
		}
		before = after
	}
}
