package llmclient

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

// Description is a client's resilience policy as the service mesh meets it: what each
// route's calls may cost in time and in upstream requests. It marshals with
// encoding/json to the schema that infermesh-lint (module meshlint) reads with -app,
// so a running service can export the policy it really runs:
//
//	{
//	  "routes": [
//	    {"name": "chat", "prefix": "/v1/chat/completions", "timeout": "300s",
//	     "perTryTimeout": "150s", "attempts": 2, "hedging": false,
//	     "stream": {"firstTokenTimeout": "150s", "idleTimeout": "60s", "maxDuration": "0s"}}
//	  ],
//	  "sdkRetries": 2,
//	  "concurrency": 64,
//	  "affinityHeader": "x-session-id"
//	}
//
// Every duration is an effective value: "0s" means no limit. A Description is a
// plain value; it is safe to share once built.
type Description struct {
	// Routes are the client's routes, longest Prefix first; the route with the empty
	// Prefix takes every path no other route matches.
	Routes []RouteDescription `json:"routes"`
	// SDKRetries is how many times the SDK above the client retries a failed call on
	// its own (openai-go: 2 by default; go-openai: 0). [Transport.Describe] leaves it
	// 0: the transport cannot see its caller.
	SDKRetries int `json:"sdkRetries"`
	// Concurrency is the number of calls the service keeps in flight at its peak; 0
	// means not declared. Describe leaves it 0.
	Concurrency int `json:"concurrency"`
	// AffinityHeader is the request header that carries the session key the mesh may
	// hash on (for example "x-session-id"); empty means the client sends none.
	// Describe leaves it empty: this version of the client sends no affinity header.
	AffinityHeader string `json:"affinityHeader"`
}

// RouteDescription is the policy of one route of a [Description].
type RouteDescription struct {
	// Name is the route's name, for example "chat".
	Name string `json:"name"`
	// Prefix is the request path prefix the route takes; empty for the default route.
	Prefix string `json:"prefix"`
	// Timeout bounds a non-streamed call, retries and waits included; 0: none.
	Timeout Duration `json:"timeout"`
	// PerTryTimeout bounds one attempt of a non-streamed call; 0: none.
	PerTryTimeout Duration `json:"perTryTimeout"`
	// Attempts is the number of attempts in all, the first included (at least 1).
	Attempts int `json:"attempts"`
	// Hedging reports whether the route sends a second request before the first one
	// failed. This version of the client never hedges.
	Hedging bool `json:"hedging"`
	// Stream holds the deadlines of streamed calls.
	Stream StreamDescription `json:"stream"`
}

// StreamDescription holds the deadlines of a route's streamed calls; see [StreamPolicy].
type StreamDescription struct {
	// FirstTokenTimeout bounds the wait for the first content chunk of an attempt.
	FirstTokenTimeout Duration `json:"firstTokenTimeout"`
	// IdleTimeout bounds the gap between two chunks.
	IdleTimeout Duration `json:"idleTimeout"`
	// MaxDuration bounds a whole stream; 0: none, a stream may last as long as it
	// keeps producing chunks.
	MaxDuration Duration `json:"maxDuration"`
}

// Duration is a time.Duration that marshals to JSON as a Go duration string in
// seconds, such as "300s" or "0.25s", and unmarshals from any string
// time.ParseDuration accepts ("5m", "1m30s"). A negative duration is an error.
type Duration time.Duration

// MarshalJSON writes d in whole and fractional seconds, exactly.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, d.String()), nil
}

// String returns d in seconds, such as "300s", "0.1s" or "0s".
func (d Duration) String() string {
	u, sign := uint64(d), ""
	if d < 0 {
		u, sign = -u, "-" // exact for every value, the most negative included
	}
	s := strconv.FormatUint(u/1e9, 10)
	if frac := u % 1e9; frac != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%09d", frac), "0")
	}
	return sign + s + "s"
}

// UnmarshalJSON reads a duration string; see [Duration].
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"300s\", not %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// Describe returns the policy t runs, with every default filled in. It reads only the
// configuration, so it is safe to call concurrently with calls.
func (t *Transport) Describe() Description {
	d := Description{Routes: make([]RouteDescription, 0, len(t.cfg.routes))}
	for _, rt := range t.cfg.routes {
		d.Routes = append(d.Routes, describeRoute(rt))
	}
	return d
}

// DefaultDescription returns the description of a client built from Config{}: the
// default routes with every default filled in.
func DefaultDescription() Description {
	// A Base keeps NewTransport from building a pooled transport that is never used.
	t, err := NewTransport(Config{Base: noTransport{}})
	if err != nil {
		panic("llmclient: the zero Config is invalid: " + err.Error()) // a bug, caught by the tests
	}
	return t.Describe()
}

type noTransport struct{}

func (noTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("llmclient: a description's transport carries no request")
}

// describeRoute resolves the breaker.Config defaults that the policy applies itself.
func describeRoute(rt Route) RouteDescription {
	timeout := rt.Policy.Timeout
	switch {
	case timeout == 0:
		timeout = breaker.DefaultTimeout
	case timeout < 0:
		timeout = 0
	}
	attempts := rt.Policy.MaxAttempts
	if attempts == 0 {
		attempts = breaker.DefaultMaxAttempts
	}
	return RouteDescription{
		Name:          rt.Name,
		Prefix:        rt.Prefix,
		Timeout:       Duration(timeout),
		PerTryTimeout: Duration(max(rt.Policy.PerTryTimeout, 0)),
		Attempts:      attempts,
		Stream: StreamDescription{
			FirstTokenTimeout: Duration(rt.Stream.FirstTokenTimeout),
			IdleTimeout:       Duration(rt.Stream.IdleTimeout),
			MaxDuration:       Duration(rt.Stream.MaxStreamDuration),
		},
	}
}
