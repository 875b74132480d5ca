package steer

import (
	"math/bits"
	"math/rand/v2"
	"sync"
)

// table is the part of a Router that SetWeights replaces as a whole: the
// weights and what derives from them. Pick loads it once, so one call sees
// one set of weights. It never changes after newTable but for the
// round-robin state, which has its own lock.
type table struct {
	weights []int    // by backend index
	pool    uint64   // the backends with a positive weight
	ring    []vnode  // the session ring, sorted by hash
	rr      *rrState // the weighted split's position
}

func newTable(names []string, weights []int) *table {
	t := &table{
		weights: weights,
		ring:    newRing(names, weights),
		rr:      &rrState{current: make([]int64, len(weights))},
	}
	for i, w := range weights {
		if w > 0 {
			t.pool |= 1 << i
		}
	}
	return t
}

// rrState is nginx's smooth weighted round-robin: at each step every
// candidate's current value grows by its weight, the largest wins and drops
// by the candidates' total weight. Over any run of steps each backend's share
// stays within one call of its weight's share, and the heavy backend's calls
// are interleaved with the light one's instead of coming in a burst.
type rrState struct {
	mu      sync.Mutex
	current []int64 // by backend index
}

// next returns the next backend among the candidates (a non-empty set of
// backends with a positive weight).
func (rr *rrState) next(candidates uint64, weights []int) int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	best, total := -1, int64(0)
	for m := candidates; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		w := int64(weights[i])
		rr.current[i] += w
		total += w
		if best < 0 || rr.current[i] > rr.current[best] {
			best = i
		}
	}
	rr.current[best] -= total
	return best
}

// carryTo gives the new table's split the position of this one, so that
// frequent SetWeights calls (a control loop that sets the same weights every
// second) do not restart the round-robin, which would favour the heaviest
// backend at each restart. A backend whose new weight is 0 starts afresh.
func (rr *rrState) carryTo(next *rrState, weights []int) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for i, w := range weights {
		if w > 0 {
			next.current[i] = rr.current[i]
		}
	}
}

// leastLoaded takes two distinct candidates at random and returns the one
// with the lower (in-flight+1)/weight; the first on a tie.
func (r *Router) leastLoaded(t *table, candidates uint64) int {
	n := bits.OnesCount64(candidates)
	a := nthBit(candidates, rand.IntN(n))
	if n == 1 {
		return a
	}
	b := nthBit(candidates&^(1<<a), rand.IntN(n-1))
	la, lb := r.inflight[a].Load()+1, r.inflight[b].Load()+1
	if la*int64(t.weights[b]) <= lb*int64(t.weights[a]) {
		return a
	}
	return b
}

// nthBit returns the index of the n-th (from 0) set bit of m.
func nthBit(m uint64, n int) int {
	for range n {
		m &= m - 1
	}
	return bits.TrailingZeros64(m)
}
