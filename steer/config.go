package steer

import (
	"fmt"
	"math"
	"strings"
)

// Limits of a [Config]. Backends are tracked in 64-bit sets, so a Pick needs
// no allocation; weights are bounded so that sums and products of weights and
// in-flight counts cannot overflow.
const (
	MaxBackends = 64
	MaxWeight   = 1_000_000
)

// Defaults of [Config]: a zero field takes the value here.
const (
	// DefaultAffinityHeader is the header whose value names a session.
	DefaultAffinityHeader = "x-session-id"
	// DefaultLoadFactor bounds a backend's share of the sessions' in-flight
	// calls at 1.25 times its fair share, the factor Mirrokni, Thorup and
	// Zadimoghaddam recommend.
	DefaultLoadFactor = 1.25
	// DefaultMinHealthyPercent is 0, as Istio's minHealthPercent: unhealthy
	// backends are skipped whenever at least one backend is healthy. See
	// Config.MinHealthyPercent for why.
	DefaultMinHealthyPercent = 0.0
)

// NoAffinity, as Config.AffinityHeader, switches session affinity off (the
// same "-" that switches a field off in a Go struct tag).
const NoAffinity = "-"

// Balance selects how a Router spreads the calls that no rule and no session
// decides.
type Balance int

const (
	// Weighted (the zero value) splits calls in proportion to the weights
	// with a smooth weighted round-robin, as nginx does: deterministic, and
	// even at every scale (at 90/10, the minor backend takes one call in each
	// ten, not ten in a row).
	Weighted Balance = iota
	// LeastLoaded takes two distinct backends at random and picks the one
	// with fewer calls in flight relative to its weight, (in-flight+1)/weight,
	// as Envoy's LEAST_REQUEST balancer does with unequal weights. Weights are
	// then capacities: at low concurrency the heavier backend wins ties.
	LeastLoaded
)

// String returns "weighted" or "least-loaded".
func (b Balance) String() string {
	switch b {
	case Weighted:
		return "weighted"
	case LeastLoaded:
		return "least-loaded"
	}
	return fmt.Sprintf("Balance(%d)", int(b))
}

// Backend is one named target of a [Router]: a model version, a provider, a
// replica. The router knows nothing else of it; the caller maps the name to a
// URL, credentials and a model.
type Backend struct {
	// Name identifies the backend in rules, weights, [Choice] and
	// [Request.Healthy]. Required and unique.
	Name string
	// Weight is the backend's relative share of the weighted split and of the
	// sessions, in [0, MaxWeight]. 0 means no share: the backend takes only
	// the calls a rule sends it. At least one backend needs a positive weight.
	Weight int
}

// Rule sends the calls whose header matches to one backend. Set exactly one
// of Exact and Prefix; an absent header (the lookup returns "") never
// matches.
//
// A rule whose backend the call excludes or whose backend is unhealthy is
// passed over, and the next rule, the session or the balance decides: a rule
// steers traffic, it does not make its backend a single point of failure, and
// the hedge of a pinned call can still go elsewhere.
type Rule struct {
	// Header is the header name given to [Request.Header]. With net/http's
	// Header.Get, names are case-insensitive.
	Header string
	// Exact matches a value equal to it.
	Exact string
	// Prefix matches a value that starts with it.
	Prefix string
	// Backend is the Name of the backend that takes the matching calls.
	Backend string
}

// Config configures a [Router]. The zero value of every field but Backends
// means its documented default; [New] rejects a negative, out-of-range or
// contradictory value with an error that names the field and the value.
type Config struct {
	// Backends are the targets, in the order that breaks ties. Required: at
	// least one, at most MaxBackends, one with a positive weight.
	Backends []Backend
	// Rules are tried in order before anything else; the first whose header
	// matches and whose backend is available for the call wins.
	Rules []Rule
	// Balance spreads the calls no rule or session decides. The zero value
	// is Weighted.
	Balance Balance
	// AffinityHeader names the header whose value is a session key: calls
	// that carry it go to the session's backend on a consistent-hash ring.
	// "" means DefaultAffinityHeader; NoAffinity switches affinity off.
	AffinityHeader string
	// LoadFactor bounds a session backend's load: a session moves on to the
	// next backend on the ring while its own has
	// ceil(LoadFactor × (in-flight calls + 1) × weight/total weight) calls in
	// flight or more, counted over the backends available to the call.
	// At least 1; 0 means DefaultLoadFactor. A large value (say 100) makes
	// affinity ignore load.
	LoadFactor float64
	// MinHealthyPercent is the share of healthy backends, in [0,100], below
	// which a Router stops skipping unhealthy ones, as Istio's
	// minHealthPercent and Envoy's panic threshold: when fewer than this
	// percentage of the backends with a positive weight are healthy, health
	// is ignored and [Choice.IgnoredHealth] says so. 0, the default, never
	// ignores health: when no backend is healthy, Pick fails with
	// [ErrNoBackend] so the caller can fail over at once.
	//
	// The default is 0 rather than Envoy's 50 because our users have few
	// backends (two providers, two model versions), where one healthy backend
	// of three is the ordinary failover, and because an unhealthy backend is
	// one whose circuit breaker is open or whose quota is spent: a call sent
	// to it fails at once and relieves no one. Set it (50 is Envoy's value)
	// for a fleet of replicas that share load, where spreading calls over
	// struggling replicas beats overloading the last healthy ones; a value
	// such as 1 ignores health only when no backend is healthy.
	MinHealthyPercent float64
}

// settings are a validated Config with the defaults filled in and names
// resolved to backend indexes.
type settings struct {
	names      []string
	index      map[string]int
	initial    []int // the weights of Config; the current ones are the Router's table's
	rules      []rule
	balance    Balance
	affinity   string // "" = off
	loadFactor float64
	minHealthy float64
}

// rule is a validated Rule.
type rule struct {
	header  string
	value   string
	prefix  bool
	backend int
}

func (r *rule) matches(v string) bool {
	if r.prefix {
		return strings.HasPrefix(v, r.value)
	}
	return v == r.value
}

func fieldErr(field string, value any, problem string) error {
	if s, ok := value.(string); ok {
		return fmt.Errorf("steer: %s %q %s", field, s, problem)
	}
	return fmt.Errorf("steer: %s %v %s", field, value, problem)
}

func (c *Config) settings() (settings, error) {
	s := settings{balance: c.Balance}
	if err := s.setBackends(c.Backends); err != nil {
		return s, err
	}
	for i, r := range c.Rules {
		vr, err := s.validRule(i, r)
		if err != nil {
			return s, err
		}
		s.rules = append(s.rules, vr)
	}
	if c.Balance != Weighted && c.Balance != LeastLoaded {
		return s, fieldErr("Balance", int(c.Balance), "is not Weighted or LeastLoaded")
	}
	switch c.AffinityHeader {
	case "":
		s.affinity = DefaultAffinityHeader
	case NoAffinity:
	default:
		s.affinity = c.AffinityHeader
	}
	switch lf := c.LoadFactor; {
	case lf == 0:
		s.loadFactor = DefaultLoadFactor
	case math.IsNaN(lf) || math.IsInf(lf, 0) || lf < 1:
		return s, fieldErr("LoadFactor", lf, "is not a finite number of at least 1 (0 means 1.25)")
	default:
		s.loadFactor = lf
	}
	if p := c.MinHealthyPercent; math.IsNaN(p) || p < 0 || p > 100 {
		return s, fieldErr("MinHealthyPercent", p, "is out of range [0,100]")
	}
	s.minHealthy = c.MinHealthyPercent
	return s, nil
}

func (s *settings) setBackends(bs []Backend) error {
	if len(bs) == 0 {
		return fmt.Errorf("steer: Backends is empty")
	}
	if len(bs) > MaxBackends {
		return fmt.Errorf("steer: Backends has %d backends, more than MaxBackends (%d)", len(bs), MaxBackends)
	}
	s.index = make(map[string]int, len(bs))
	for i, b := range bs {
		field := fmt.Sprintf("Backends[%d]", i)
		switch j, dup := s.index[b.Name]; {
		case b.Name == "":
			return fieldErr(field+".Name", b.Name, "is empty")
		case dup:
			return fieldErr(field+".Name", b.Name, fmt.Sprintf("repeats Backends[%d].Name", j))
		}
		s.index[b.Name] = i
		s.names = append(s.names, b.Name)
		s.initial = append(s.initial, b.Weight)
	}
	return checkWeights(s.initial, func(i int) string { return fmt.Sprintf("Backends[%d].Weight", i) })
}

// checkWeights reports a weight out of range, or every weight zero. field
// names weight i in the error.
func checkWeights(ws []int, field func(i int) string) error {
	positive := false
	for i, w := range ws {
		if w < 0 || w > MaxWeight {
			return fieldErr(field(i), w, fmt.Sprintf("is out of range [0,%d]", MaxWeight))
		}
		positive = positive || w > 0
	}
	if !positive {
		return fmt.Errorf("steer: every backend would have weight 0; at least one needs a positive weight")
	}
	return nil
}

func (s *settings) validRule(i int, r Rule) (rule, error) {
	field := fmt.Sprintf("Rules[%d]", i)
	b, known := s.index[r.Backend]
	switch {
	case r.Header == "":
		return rule{}, fmt.Errorf("steer: %s.Header is empty", field)
	case r.Exact == "" && r.Prefix == "":
		return rule{}, fmt.Errorf("steer: %s sets neither Exact nor Prefix", field)
	case r.Exact != "" && r.Prefix != "":
		return rule{}, fmt.Errorf("steer: %s sets both Exact %q and Prefix %q", field, r.Exact, r.Prefix)
	case !known:
		return rule{}, fieldErr(field+".Backend", r.Backend, "is not a backend")
	}
	if r.Prefix != "" {
		return rule{header: r.Header, value: r.Prefix, prefix: true, backend: b}, nil
	}
	return rule{header: r.Header, value: r.Exact, backend: b}, nil
}
