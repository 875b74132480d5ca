package llmclient

import (
	"container/list"
	"fmt"
	"sync"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/transport"
)

// policies holds one breaker policy per route and upstream host, bounded: a client that
// talks to many hosts (a fallback per tenant, a gateway per region) must not keep a
// breaker for every host it ever saw.
type policies struct {
	t   *Transport
	max int

	mu  sync.Mutex
	m   map[policyKey]*list.Element // values are *policyEntry
	lru *list.List                  // front = most recently used
}

type policyKey struct {
	route int
	host  string
}

type policyEntry struct {
	key      policyKey
	p        *breaker.Policy
	inUse    int       // calls holding it
	lastUsed time.Time // when the last call released it
	idleTTL  time.Duration
}

// idleGrace is added to a policy's OpenDuration before an idle one may be dropped: long
// enough that an open breaker is never forgotten while it matters.
const idleGrace = time.Minute

func newPolicies(t *Transport, max int) *policies {
	return &policies{t: t, max: max, m: make(map[policyKey]*list.Element), lru: list.New()}
}

// acquire returns the policy of a route and host, creating it once, and holds it until
// release.
func (ps *policies) acquire(route int, host string) *policyEntry {
	k := policyKey{route, host}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if el, ok := ps.m[k]; ok {
		ps.lru.MoveToFront(el)
		e := el.Value.(*policyEntry)
		e.inUse++
		return e
	}
	ps.evictLocked(time.Now())
	e := &policyEntry{key: k, p: ps.t.newPolicy(route, host), inUse: 1}
	e.idleTTL = ps.t.cfg.routes[route].Policy.OpenDuration
	if e.idleTTL <= 0 {
		e.idleTTL = breaker.DefaultOpenDuration
	}
	e.idleTTL += idleGrace
	ps.m[k] = ps.lru.PushFront(e)
	return e
}

func (ps *policies) release(e *policyEntry) {
	ps.mu.Lock()
	e.inUse--
	e.lastUsed = time.Now()
	ps.mu.Unlock()
}

// evictLocked drops the policies idle past their time, then, at the bound, the least
// recently used idle one. Policies in use are never dropped, so the bound can be passed
// while that many calls are in flight to that many hosts.
func (ps *policies) evictLocked(now time.Time) {
	for el := ps.lru.Back(); el != nil; {
		prev := el.Prev()
		e := el.Value.(*policyEntry)
		if e.inUse == 0 && (ps.lru.Len() >= ps.max || now.Sub(e.lastUsed) > e.idleTTL) {
			ps.lru.Remove(el)
			delete(ps.m, e.key)
		}
		el = prev
	}
}

// get returns the policy of a route and host if it exists.
func (ps *policies) get(route int, host string) *breaker.Policy {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if el, ok := ps.m[policyKey{route, host}]; ok {
		return el.Value.(*policyEntry).p
	}
	return nil
}

// len returns the number of policies held.
func (ps *policies) len() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.lru.Len()
}

// newPolicy builds the breaker policy of a route for one upstream host.
func (t *Transport) newPolicy(route int, host string) *breaker.Policy {
	rt := t.cfg.routes[route]
	pc := rt.Policy
	pc.Name = rt.Name + " " + host
	// The route's time limits are request context deadlines (see call.run and
	// call.attempt; streams have their own): the requests honour their context, so the
	// breaker's time limiter, which hands each attempt to another goroutine, is not
	// needed.
	pc.Timeout, pc.PerTryTimeout = breaker.NoTimeout, breaker.NoTimeout
	if pc.Classifier == nil {
		pc.Classifier = transport.Classify // network errors, then breaker's rules
	}
	pc.Hooks = t.hooks(rt.Policy.Hooks)
	p, err := breaker.New(pc)
	if err != nil {
		// resolve validated this configuration; only the name and hooks changed.
		panic(fmt.Sprintf("llmclient: route %q: %v", rt.Name, err))
	}
	return p
}
