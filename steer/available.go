package steer

import "math/bits"

// pick is one Pick's view of which backends it may choose. Backends are
// bits of a uint64, by index.
type pick struct {
	t     *table
	req   *Request
	names []string
	// excluded are the backends the request excludes.
	excluded uint64
	// known are the backends Healthy has been asked about, healthy those it
	// said yes to: Healthy runs at most once per backend per Pick.
	known, healthy uint64
	// ignoreHealth is set when too few backends are healthy
	// (Config.MinHealthyPercent).
	ignoreHealth bool
}

func (r *Router) begin(req *Request) pick {
	p := pick{t: r.table.Load(), req: req, names: r.s.names}
	for _, name := range req.Exclude {
		if i, ok := r.s.index[name]; ok {
			p.excluded |= 1 << i
		}
	}
	if req.Healthy != nil && r.s.minHealthy > 0 {
		healthy, all := 0, 0
		for m := p.t.pool; m != 0; m &= m - 1 {
			all++
			if p.isHealthy(bits.TrailingZeros64(m)) {
				healthy++
			}
		}
		// The share is of the pool as a whole, excluded backends included:
		// the health of the backends does not depend on the call.
		p.ignoreHealth = float64(healthy)*100 < r.s.minHealthy*float64(all)
	}
	return p
}

func (p *pick) isHealthy(i int) bool {
	if p.req.Healthy == nil {
		return true
	}
	bit := uint64(1) << i
	if p.known&bit == 0 {
		p.known |= bit
		if p.req.Healthy(p.names[i]) {
			p.healthy |= bit
		}
	}
	return p.healthy&bit != 0
}

// available reports whether backend i may take the call: not excluded, and
// healthy unless health is ignored.
func (p *pick) available(i int) bool {
	return p.excluded&(1<<i) == 0 && (p.ignoreHealth || p.isHealthy(i))
}

// availablePool returns the available backends with a positive weight.
func (p *pick) availablePool() uint64 {
	var avail uint64
	for m := p.t.pool; m != 0; m &= m - 1 {
		if i := bits.TrailingZeros64(m); p.available(i) {
			avail |= 1 << i
		}
	}
	return avail
}

// header returns the call's value of the named header; "" when the call has
// none or name is "".
func (p *pick) header(name string) string {
	if name == "" || p.req.Header == nil {
		return ""
	}
	return p.req.Header(name)
}
