package steer

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
)

// ringPoints is how many points on the ring the heaviest backend gets; the
// others get a share in proportion to their weight (at least one). 160 is the
// count ketama (libmemcached's consistent hashing) gives each server: enough
// that each backend's arc is within a few percent of its share.
const ringPoints = 160

// vnode is one point of a backend on the session ring.
type vnode struct {
	hash    uint64
	backend int
}

// newRing places ringPoints×weight/max(weight) points per backend with a
// positive weight. A point's place depends only on the backend's name and
// the point's number, so every process builds the same ring from the same
// names (a session maps to the same backend from every replica of the
// caller), and a backend whose weight grows keeps its old points.
func newRing(names []string, weights []int) []vnode {
	heaviest := slices.Max(weights)
	var ring []vnode
	for i, w := range weights {
		if w == 0 {
			continue
		}
		n := (ringPoints*w + heaviest - 1) / heaviest
		base := fnv1a(names[i])
		for j := range n {
			ring = append(ring, vnode{hash: mix(base + uint64(j)*golden), backend: i})
		}
	}
	slices.SortFunc(ring, func(a, b vnode) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.backend, b.backend))
	})
	return ring
}

// bySession returns the session's backend among the candidates (a non-empty
// subset of the ring's backends) and whether its in-flight count was raised.
//
// This is consistent hashing with bounded loads (Mirrokni, Thorup and
// Zadimoghaddam, 2018): walking clockwise from the session's point, the first
// candidate whose load is below its bound takes the call. A backend's bound is
// ceil(LoadFactor × (load+1) × weight/total weight), load and total weight
// over the candidates; the bounds add up to more than the load, so some
// candidate is always below its bound. Calls racing with this one can make
// that false for an instant; then the session's first candidate takes the
// call regardless.
func (r *Router) bySession(t *table, candidates uint64, key string) (int, bool) {
	var load, weight int64
	for m := candidates; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		load += r.inflight[i].Load()
		weight += int64(t.weights[i])
	}
	perWeight := r.s.loadFactor * float64(load+1) / float64(weight)

	h := mix(fnv1a(key))
	start, _ := slices.BinarySearchFunc(t.ring, h, func(v vnode, h uint64) int { return cmp.Compare(v.hash, h) })
	first, seen := -1, uint64(0)
	for k := 0; k < len(t.ring) && seen != candidates; k++ {
		i := t.ring[(start+k)%len(t.ring)].backend
		bit := uint64(1) << i
		if candidates&bit == 0 || seen&bit != 0 {
			continue
		}
		seen |= bit
		if first < 0 {
			first = i
		}
		if r.countBelow(i, int64(math.Ceil(perWeight*float64(t.weights[i])))) {
			return i, true
		}
	}
	return first, false
}

// countBelow raises backend i's in-flight count if it is below bound, in one
// atomic step, so that concurrent picks cannot push it past the bound.
func (r *Router) countBelow(i int, bound int64) bool {
	c := &r.inflight[i]
	// Each failed swap means another call changed the count, so the loop ends
	// once the others stop racing; in practice it runs once or twice.
	for {
		n := c.Load()
		if n >= bound {
			return false
		}
		if c.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// fnv1a is the 64-bit FNV-1a hash of s, as hash/fnv's New64a computes it,
// written out so that hashing a session key allocates nothing. It is fixed
// across processes and releases, as the ring must be; hash/maphash is not.
func fnv1a(s string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return h
}

// golden is 2^64 divided by the golden ratio: consecutive multiples of it
// are far apart, so a backend's points are distinct inputs to mix.
const golden = 0x9e3779b97f4a7c15

// mix is the finalizer of SplitMix64: a bijection that spreads every input bit over the output, which
// FNV-1a alone does poorly for keys that differ only in their last bytes
// ("session-1", "session-2").
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
