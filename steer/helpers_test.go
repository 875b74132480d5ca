package steer_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/infermesh/infermesh/steer"
)

func mustNew(t testing.TB, c steer.Config) *steer.Router {
	t.Helper()
	r, err := steer.New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// backends returns backends named and weighted as pairs ("v1", 90, "v2", 10).
func backends(pairs ...any) []steer.Backend {
	var bs []steer.Backend
	for i := 0; i < len(pairs); i += 2 {
		bs = append(bs, steer.Backend{Name: pairs[i].(string), Weight: pairs[i+1].(int)})
	}
	return bs
}

// headers returns a Request.Header lookup for name/value pairs.
func headers(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(name string) string { return m[name] }
}

func session(id string) steer.Request {
	return steer.Request{Header: headers(steer.DefaultAffinityHeader, id)}
}

func sessionID(i int) string { return fmt.Sprintf("session-%d", i) }

// health is a Request.Healthy whose answers a test changes while picks run.
type health struct {
	mu        sync.Mutex
	unhealthy map[string]bool
}

func newHealth(unhealthy ...string) *health {
	h := &health{unhealthy: map[string]bool{}}
	h.set(true, unhealthy...)
	return h
}

func (h *health) set(unhealthy bool, names ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range names {
		h.unhealthy[n] = unhealthy
	}
}

func (h *health) healthy(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.unhealthy[name]
}

// pick picks and ends the call at once, failing the test on an error.
func pick(t testing.TB, r *steer.Router, req steer.Request) steer.Choice {
	t.Helper()
	c, done, err := r.Pick(req)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	done()
	return c
}

// count picks n times and counts the backends chosen.
func count(t testing.TB, r *steer.Router, n int, req steer.Request) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		got[pick(t, r, req).Backend]++
	}
	return got
}
