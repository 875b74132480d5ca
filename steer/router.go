package steer

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrNoBackend is returned by [Router.Pick] when no backend is available for
// the call: each candidate is excluded by the request or unhealthy (and health
// is not being ignored, see Config.MinHealthyPercent).
var ErrNoBackend = errors.New("steer: no backend available (all excluded or unhealthy)")

// Reason says which step of [Router.Pick] chose the backend.
type Reason string

// The reasons of a [Choice], in the order Pick tries them.
const (
	ReasonRule        Reason = "rule"         // a header rule matched
	ReasonAffinity    Reason = "affinity"     // the call carries a session key
	ReasonWeighted    Reason = "weighted"     // the weighted split (Balance Weighted)
	ReasonLeastLoaded Reason = "least-loaded" // two random choices (Balance LeastLoaded)
)

// Request is what [Router.Pick] knows of one call. The zero value is a call
// with no headers, every backend healthy and none excluded.
type Request struct {
	// Header looks up a header of the call; it returns "" for an absent
	// header. nil means the call has no headers.
	Header func(name string) string
	// Healthy reports whether a backend should take calls now (for example:
	// its circuit breaker is not open and it has quota). It is called at
	// most once per backend per Pick, and only for backends Pick considers.
	// nil means every backend is healthy.
	Healthy func(backend string) bool
	// Exclude names backends this call must not go to: the backend of the
	// attempt a hedge or a retry runs beside or after. Names that are not
	// backends are ignored.
	Exclude []string
}

// Choice is the backend [Router.Pick] chose, and why.
type Choice struct {
	// Backend is the chosen backend's Name.
	Backend string
	// Reason says which step chose it.
	Reason Reason
	// IgnoredHealth reports that fewer than Config.MinHealthyPercent of the
	// backends were healthy, so this pick did not skip unhealthy ones.
	IgnoredHealth bool
}

// Router chooses a named backend for each call: header rules first, then
// session affinity, then the weighted split or the least-loaded choice. It
// counts the calls in flight on each backend between [Router.Pick] and the
// done function Pick returns.
//
// A Router is safe for concurrent use. Pick takes no lock but the weighted
// split's, held for one round-robin step.
type Router struct {
	s        settings
	table    atomic.Pointer[table]
	inflight []atomic.Int64 // by backend index
	done     []func()       // by backend index: ends one call in flight
	writers  sync.Mutex     // serialises SetWeights
}

// New returns a Router for c, or an error that names the first field of c
// that is invalid.
func New(c Config) (*Router, error) {
	s, err := c.settings()
	if err != nil {
		return nil, err
	}
	r := &Router{
		s:        s,
		inflight: make([]atomic.Int64, len(s.names)),
		done:     make([]func(), len(s.names)),
	}
	for i := range r.done {
		r.done[i] = func() { r.inflight[i].Add(-1) }
	}
	r.table.Store(newTable(s.names, s.initial))
	return r, nil
}

// SetWeights changes the weights of the named backends; the others keep
// theirs. The change applies to every Pick that starts after SetWeights
// returns; calls in flight are not affected, and no Pick fails or waits
// because of it. An unknown name, a weight out of [0, MaxWeight] or a result
// with every weight zero is an error, and then no weight changes.
//
// The session ring is rebuilt with the weights. A backend's points on it
// depend only on its name and its weight relative to the heaviest, so a
// session moves only away from a backend whose share fell or to one whose
// share grew.
func (r *Router) SetWeights(weights map[string]int) error {
	r.writers.Lock()
	defer r.writers.Unlock()
	next := slices.Clone(r.table.Load().weights)
	for name, w := range weights {
		i, ok := r.s.index[name]
		if !ok {
			return fieldErr("SetWeights", name, "is not a backend")
		}
		next[i] = w
	}
	err := checkWeights(next, func(i int) string { return fmt.Sprintf("SetWeights[%q]", r.s.names[i]) })
	if err != nil {
		return err
	}
	old := r.table.Load()
	t := newTable(r.s.names, next)
	old.rr.carryTo(t.rr, next)
	r.table.Store(t)
	return nil
}

// Weights returns the current weight of every backend, a new map on each call.
func (r *Router) Weights() map[string]int {
	t := r.table.Load()
	m := make(map[string]int, len(t.weights))
	for i, w := range t.weights {
		m[r.s.names[i]] = w
	}
	return m
}

// Pick chooses the backend for one call. In order:
//
//  1. Rules: the first rule whose header matches and whose backend is
//     available (not excluded, healthy) takes the call.
//  2. Affinity: a call that carries the affinity header goes to its
//     session's backend on a consistent-hash ring with bounded loads: the
//     first backend clockwise from the session's point that is available and
//     below its load bound (see Config.LoadFactor).
//  3. Otherwise the Balance: the weighted split or the least-loaded choice,
//     among the available backends with a positive weight.
//
// The done function ends the call's count in flight; call it exactly once,
// when the call has ended (the response body closed, the stream done).
// When no backend is available, Pick returns [ErrNoBackend] and a done
// that does nothing, so `defer done()` is always safe.
func (r *Router) Pick(req Request) (Choice, func(), error) {
	p := r.begin(&req)
	c, i, counted := r.choose(&p)
	if i < 0 {
		return Choice{}, noop, ErrNoBackend
	}
	if !counted {
		r.inflight[i].Add(1)
	}
	c.Backend = r.s.names[i]
	c.IgnoredHealth = p.ignoreHealth
	return c, r.done[i], nil
}

// choose returns the backend for the call (-1 if none) and whether its
// in-flight count has already been raised for the call.
func (r *Router) choose(p *pick) (c Choice, backend int, counted bool) {
	if i := r.byRule(p); i >= 0 {
		return Choice{Reason: ReasonRule}, i, false
	}
	avail := p.availablePool()
	if avail == 0 {
		return Choice{}, -1, false
	}
	if key := p.header(r.s.affinity); key != "" {
		i, counted := r.bySession(p.t, avail, key)
		return Choice{Reason: ReasonAffinity}, i, counted
	}
	if r.s.balance == LeastLoaded {
		return Choice{Reason: ReasonLeastLoaded}, r.leastLoaded(p.t, avail), false
	}
	return Choice{Reason: ReasonWeighted}, p.t.rr.next(avail, p.t.weights), false
}

// byRule returns the backend of the first matching rule whose backend is
// available, or -1.
func (r *Router) byRule(p *pick) int {
	if p.req.Header == nil {
		return -1
	}
	for k := range r.s.rules {
		ru := &r.s.rules[k]
		if ru.matches(p.req.Header(ru.header)) && p.available(ru.backend) {
			return ru.backend
		}
	}
	return -1
}

func noop() {}
