package steer

import (
	"hash/fnv"
	"sync"
	"testing"
)

func TestFNV1aIsHashFNV(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "a", "session-1", "x-session-id: 0b9c6a2e-4f7e-4b8e-9d3c-51c1b6a0f9e2", "\xff\x00"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := fnv1a(s), h.Sum64(); got != want {
			t.Errorf("fnv1a(%q) = %#x, hash/fnv says %#x", s, got, want)
		}
	}
}

func TestRingPointsFollowWeights(t *testing.T) {
	t.Parallel()
	ring := newRing([]string{"v1", "v2", "off"}, []int{90, 10, 0})
	n := map[int]int{}
	for _, v := range ring {
		n[v.backend]++
	}
	if n[0] != ringPoints || n[1] != 18 || n[2] != 0 {
		t.Errorf("points per backend = %v, want 160, 18, 0", n)
	}
}

// Every done ends exactly one call: after concurrent picks of every kind,
// each ended at once or later, no call is left in flight.
func TestDoneEndsInFlight(t *testing.T) {
	t.Parallel()
	for _, balance := range []Balance{Weighted, LeastLoaded} {
		r, err := New(Config{
			Backends: []Backend{{"a", 3}, {"b", 1}, {"c", 0}},
			Rules:    []Rule{{Header: "pin", Exact: "c", Backend: "c"}},
			Balance:  balance,
		})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				var held []func()
				for k := range 2000 {
					req := Request{Header: func(name string) string {
						switch {
						case name == "pin" && k%5 == 0:
							return "c"
						case name == DefaultAffinityHeader && k%3 == 0:
							return string(rune('A' + (g+k)%20))
						}
						return ""
					}}
					if k%7 == 0 {
						req.Exclude = []string{"a"}
					}
					_, done, err := r.Pick(req)
					if err != nil {
						t.Error(err)
						return
					}
					held = append(held, done)
					if k%10 == 9 {
						if k%20 == 19 {
							if err := r.SetWeights(map[string]int{"a": k % 4, "b": 1}); err != nil {
								t.Error(err)
							}
						}
						for _, d := range held {
							d()
						}
						held = held[:0]
					}
				}
			})
		}
		wg.Wait()
		for i := range r.inflight {
			if n := r.inflight[i].Load(); n != 0 {
				t.Errorf("%v: %s has %d calls in flight after every done ran", balance, r.s.names[i], n)
			}
		}
	}
}
