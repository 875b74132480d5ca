package llmclient

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/tracing"
	"github.com/infermesh/infermesh/transport"
)

// Config configures [NewHTTPClient]. The zero value gives the documented defaults: the
// direct pooled transport preset, the default routes, no fallback, no request
// compression, and tracing through the global OpenTelemetry providers.
type Config struct {
	// Transport configures the pooled base transport. Ignored when Base is set.
	Transport transport.Config
	// Base, when set, carries the attempts instead of a transport built from Transport
	// (for example an llmtest server's in-memory transport, or an instrumented one).
	Base http.RoundTripper
	// Compression, when non-nil, compresses request bodies above its threshold. Off by
	// default: public LLM APIs do not accept compressed requests; switch it on for
	// internal inference services that do (see transport.DecompressHandler).
	Compression *transport.CompressionConfig

	// Routes replace the default route with the same Prefix, or add new ones. A request
	// takes the route with the longest matching Prefix; see [DefaultRoutes]. To change
	// one field of a default route, start from DefaultRoutes().
	Routes []Route

	// Fallback lists where a call goes when the primary cannot serve it. The zero value
	// has no targets: failures are returned to the caller.
	Fallback fallback.Config
	// Cache, when set, records every successful non-streamed reply, so that a
	// fallback.Cache listed in Fallback.Targets can serve it later.
	Cache *fallback.Cache

	// Tracing configures spans and metrics. Its zero value uses the global OpenTelemetry
	// providers, which are no-ops until the program installs an SDK. Trace context goes
	// out on every attempt through Tracing.Propagator; when that is nil, through the
	// global propagator if the program installed one, and as W3C traceparent otherwise.
	Tracing tracing.Config
	// Provider is reported as gen_ai.provider.name; default "openai".
	Provider string

	// Hooks are called for every route's breaker in addition to tracing's own
	// recording. They run with no lock held.
	Hooks breaker.Hooks

	// MaxRequestBytes caps the request body, which is held in memory so it can be
	// replayed on a retry or sent to a fallback; default 32 MiB.
	MaxRequestBytes int64
	// MaxResponseBytes caps a non-streamed response body, which is read in full before
	// the call is judged (a 200 may carry an error object); default 64 MiB.
	MaxResponseBytes int64
	// MaxEventBytes caps one server-sent event of a stream; default 1 MiB.
	MaxEventBytes int
}

// Route is the policy for requests whose path matches Prefix.
type Route struct {
	// Name identifies the route in breaker names and hooks, for example "chat".
	Name string
	// Prefix is matched against the request path, for example "/v1/chat/completions".
	// When no prefix matches, a route also matches a path that ends with its Prefix
	// less the leading "/v1" (so "/openai/deployments/d/chat/completions" takes the
	// chat route). The route with the empty Prefix is the default.
	Prefix string
	// Policy is the breaker, retry and time-limit policy. Each upstream host gets its
	// own breaker built from it. Its Timeout (0: breaker.DefaultTimeout; NoTimeout:
	// none) and PerTryTimeout bound non-streamed calls as deadlines on the request
	// context, enforced on one shared timer rather than by the breaker's goroutine time
	// limiter, so the Base transport must honour request contexts (net/http's does).
	// Streams use Stream instead.
	Policy breaker.Config
	// Stream applies to requests with "stream": true.
	Stream StreamPolicy
}

// StreamPolicy holds the deadlines of a streamed call. There is no total timeout unless
// MaxStreamDuration is set: a long answer that keeps producing chunks is never cut.
type StreamPolicy struct {
	// FirstTokenTimeout bounds the wait for the first content chunk of an attempt (not
	// for the response headers: reasoning models send headers and then think). Until
	// the first content chunk reaches the caller, its expiry is retried or fails over.
	// Default: the route's Policy.PerTryTimeout, or 150 s when that is unset.
	FirstTokenTimeout time.Duration
	// IdleTimeout bounds the gap between two chunks, reset on each; default 60 s.
	IdleTimeout time.Duration
	// MaxStreamDuration bounds a whole stream; 0 (the default) means no bound.
	MaxStreamDuration time.Duration
}

// DefaultRoutes returns the default routes, after the seed's VirtualService:
//
//	chat         /v1/chat/completions  300 s overall, 150 s per try, 2 attempts
//	embeddings   /v1/embeddings         30 s overall,  10 s per try, 3 attempts
//	completions  /v1/completions       300 s overall, 150 s per try, 2 attempts
//	default      (any other path)      breaker.Config defaults (120 s, 2 attempts)
//
// Streams on every route: first-token timeout = the per-try timeout (150 s when
// unset), idle timeout 60 s, no total timeout.
func DefaultRoutes() []Route {
	long := breaker.Config{Timeout: 300 * time.Second, PerTryTimeout: 150 * time.Second, MaxAttempts: 2}
	return []Route{
		{Name: "chat", Prefix: "/v1/chat/completions", Policy: long},
		{Name: "embeddings", Prefix: "/v1/embeddings", Policy: breaker.Config{Timeout: 30 * time.Second, PerTryTimeout: 10 * time.Second, MaxAttempts: 3}},
		{Name: "completions", Prefix: "/v1/completions", Policy: long},
		{Name: "default", Prefix: ""},
	}
}

const (
	defaultMaxRequestBytes  = 32 << 20
	defaultMaxResponseBytes = 64 << 20
	defaultMaxEventBytes    = 1 << 20
	defaultFirstToken       = 150 * time.Second
	defaultIdle             = 60 * time.Second
	defaultMinTryTime       = 100 * time.Millisecond // breaker.Config.MinTryTime's default
)

// resolved is a validated Config with its defaults filled in.
type resolved struct {
	Config
	routes []Route // longest Prefix first
}

func resolve(cfg Config) (*resolved, error) {
	switch {
	case cfg.MaxRequestBytes < 0:
		return nil, fmt.Errorf("llmclient: MaxRequestBytes %d is negative", cfg.MaxRequestBytes)
	case cfg.MaxResponseBytes < 0:
		return nil, fmt.Errorf("llmclient: MaxResponseBytes %d is negative", cfg.MaxResponseBytes)
	case cfg.MaxEventBytes < 0:
		return nil, fmt.Errorf("llmclient: MaxEventBytes %d is negative", cfg.MaxEventBytes)
	}
	r := &resolved{Config: cfg}
	if r.MaxRequestBytes == 0 {
		r.MaxRequestBytes = defaultMaxRequestBytes
	}
	if r.MaxResponseBytes == 0 {
		r.MaxResponseBytes = defaultMaxResponseBytes
	}
	if r.MaxEventBytes == 0 {
		r.MaxEventBytes = defaultMaxEventBytes
	}
	if r.Provider == "" {
		r.Provider = "openai"
	}

	routes := DefaultRoutes()
	for i, rt := range cfg.Routes {
		if rt.Prefix != "" && !strings.HasPrefix(rt.Prefix, "/") {
			return nil, fmt.Errorf("llmclient: Routes[%d].Prefix %q does not start with /", i, rt.Prefix)
		}
		if err := rt.Stream.validate(); err != nil {
			return nil, fmt.Errorf("llmclient: Routes[%d] (%q): %w", i, rt.Prefix, err)
		}
		replaced := false
		for j := range routes {
			if routes[j].Prefix == rt.Prefix {
				routes[j], replaced = rt, true
				break
			}
		}
		if !replaced {
			routes = append(routes, rt)
		}
	}
	for i := range routes {
		rt := &routes[i]
		if rt.Name == "" {
			rt.Name = strings.Trim(strings.ReplaceAll(strings.TrimPrefix(rt.Prefix, "/v1"), "/", "."), ".")
			if rt.Name == "" {
				rt.Name = "default"
			}
		}
		if _, err := breaker.New(rt.Policy); err != nil {
			return nil, fmt.Errorf("llmclient: route %q: %w", rt.Name, err)
		}
		if rt.Stream.FirstTokenTimeout == 0 {
			rt.Stream.FirstTokenTimeout = rt.Policy.PerTryTimeout
			if rt.Stream.FirstTokenTimeout <= 0 {
				rt.Stream.FirstTokenTimeout = defaultFirstToken
			}
		}
		if rt.Stream.IdleTimeout == 0 {
			rt.Stream.IdleTimeout = defaultIdle
		}
	}
	sort.SliceStable(routes, func(i, j int) bool { return len(routes[i].Prefix) > len(routes[j].Prefix) })
	r.routes = routes
	return r, nil
}

// overall is the route's limit on a non-streamed call, retries and waits included; 0
// means none.
func (r *Route) overall() time.Duration {
	switch to := r.Policy.Timeout; {
	case to == 0:
		return breaker.DefaultTimeout
	case to < 0:
		return 0
	default:
		return to
	}
}

func (s StreamPolicy) validate() error {
	switch {
	case s.FirstTokenTimeout < 0:
		return fmt.Errorf("Stream.FirstTokenTimeout %v is negative", s.FirstTokenTimeout)
	case s.IdleTimeout < 0:
		return fmt.Errorf("Stream.IdleTimeout %v is negative", s.IdleTimeout)
	case s.MaxStreamDuration < 0:
		return fmt.Errorf("Stream.MaxStreamDuration %v is negative", s.MaxStreamDuration)
	}
	return nil
}

// route returns the index of the route for path.
func (r *resolved) route(path string) int {
	def := -1
	for i := range r.routes {
		p := r.routes[i].Prefix
		if p == "" {
			def = i
			continue
		}
		if strings.HasPrefix(path, p) {
			return i
		}
	}
	for i := range r.routes {
		op := strings.TrimPrefix(r.routes[i].Prefix, "/v1")
		if op != "" && op != r.routes[i].Prefix && strings.HasSuffix(strings.TrimSuffix(path, "/"), op) {
			return i
		}
	}
	return def
}
