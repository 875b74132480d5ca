package llmclient

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/quota"
	"github.com/infermesh/infermesh/tracing"
	"github.com/infermesh/infermesh/transport"
)

// Config configures [NewHTTPClient]. The zero value gives the documented defaults: the
// direct pooled transport preset, the default routes, no fallback, no cache, no request
// compression, the default credential headers, and tracing through the global
// OpenTelemetry providers.
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

	// Routes change the default routes or add new ones. A Route whose Prefix (or, with
	// no Prefix, whose Name) is one of [DefaultRoutes] starts from that route: its zero
	// fields keep the default's values, so {Prefix: "/v1/chat/completions", Stream:
	// StreamPolicy{IdleTimeout: 10 * time.Second}} changes the idle timeout alone. Any
	// other Route is added, its zero fields meaning the breaker's and StreamPolicy's
	// defaults. A request takes the route with the longest matching Prefix. [Config.Route]
	// changes one field of a default route in one line.
	Routes []Route

	// Steering, when set, sends each call to one of several named backends (weighted
	// canaries, provider migrations, header rules, session affinity) instead of the
	// host the caller's SDK was configured with. nil: calls go where the caller sent
	// them. Change the weights at run time with [Transport.SetWeights].
	Steering *Steering
	// ModelHeader names a header every outgoing request carries with the model it asks
	// for (after any rewrite), so the mesh can see it: an Istio Telemetry access-log
	// filter on request.headers["x-model-name"], say. "" means "x-model-name"; "-"
	// sends none.
	ModelHeader string

	// Fallback lists where a call goes when the primary cannot serve it. The zero value
	// has no targets: failures are returned to the caller.
	Fallback fallback.Config
	// Cache, when set, records the last good reply of every completion-style call
	// (chat, legacy completions, the Responses API and embeddings; streamed or not),
	// per tenant, upstream host and path, so that a fallback.Cache listed in
	// Fallback.Targets can serve it later. Creates (batches, files, ...) are never
	// recorded.
	Cache *fallback.Cache

	// Quota, when set, admits each attempt against the provider's limits before it is
	// sent: one request and an estimate of its tokens (quota.EstimateTokens, with
	// QuotaDefaultMaxTokens for a request that names no max_tokens), under the key of
	// its upstream (with Steering, the backend's name; otherwise the host), trued up to
	// the usage the answer reports. It learns from every answer's x-ratelimit-* headers
	// and a 429's Retry-After. A call that cannot be admitted in time fails with an error
	// matching quota.ErrQuota, which a fallback may serve; with Steering, a backend out
	// of quota is skipped like an unhealthy one. The Limiter (local, or shared across
	// replicas through Redis) is the caller's: llmclient never closes it.
	Quota *quota.Limiter
	// QuotaDefaultMaxTokens is the estimate of an answer's tokens for a request that
	// names no max_tokens; 0 means 1024.
	QuotaDefaultMaxTokens int

	// CredentialHeaders names the request headers that carry credentials; nil means
	// transport.DefaultCredentials() (Authorization, api-key, x-api-key,
	// Ocp-Apim-Subscription-Key, X-Goog-Api-Key, Proxy-Authorization). The one list
	// serves every rule about secrets: their values are scrubbed from errors and error
	// bodies, they identify the tenant of a cached reply, a fallback never receives them,
	// and a redirect to another host drops them.
	CredentialHeaders transport.Credentials
	// TenantHeader names a request header that tells tenants apart beyond their
	// credentials, for a service that calls the provider with one key on behalf of many
	// customers (x-tenant-id, say): its value joins the credentials' fingerprint in the
	// tenant of a cached reply, so a customer is never served another's answer. ""
	// means none: the credentials alone identify the tenant. The header is forwarded
	// unchanged.
	TenantHeader string

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
	// the call is judged (a 200 may carry an error object), and the events a stream
	// holds back before its first output; default 64 MiB.
	MaxResponseBytes int64
	// MaxEventBytes caps one server-sent event of a stream; default 1 MiB.
	MaxEventBytes int
	// MaxUpstreams bounds the breaker policies kept, one per route and upstream host;
	// default 1024. A policy idle for longer than its OpenDuration plus one minute is
	// dropped first; past the bound, the least recently used idle one is.
	MaxUpstreams int
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
	// none) bounds a non-streamed call from start to end, retries, waits and fallback
	// included; its PerTryTimeout bounds each attempt. Both are request context
	// deadlines, so the Base transport must honour request contexts (net/http's does).
	// Streams use Stream instead.
	Policy breaker.Config
	// Stream applies to requests with "stream": true.
	Stream StreamPolicy
	// Hedge, when set, sends a call whose first output is slow to a second backend
	// too (it needs Steering); nil (the default) never hedges.
	Hedge *Hedge
}

// StreamPolicy holds the deadlines of a streamed call. There is no total timeout unless
// MaxStreamDuration is set: a long answer that keeps producing chunks is never cut.
type StreamPolicy struct {
	// FirstTokenTimeout bounds the wait for the first event that carries output (not
	// for the response headers: reasoning models send headers and then think). Until
	// output reaches the caller, its expiry is retried or fails over. Default: the
	// route's Policy.PerTryTimeout, or 150 s when that is unset.
	FirstTokenTimeout time.Duration
	// IdleTimeout bounds how long the caller waits on a silent upstream for the next
	// event; default 60 s. It runs only while the caller is waiting: a slow consumer
	// never cuts a healthy stream.
	IdleTimeout time.Duration
	// MaxStreamDuration bounds a whole stream; 0 (the default) means no bound.
	MaxStreamDuration time.Duration
	// NoUsageRequest stops infermesh from adding stream_options.include_usage to
	// streamed chat and completion requests (it adds it by default so that a stream's
	// token usage can be traced). Strict OpenAI-compatible servers answer 400 to the
	// field; infermesh also retries such a call once without it and stops adding it for
	// that host by itself.
	NoUsageRequest bool
}

// DefaultRoutes returns the default routes, after Istio's per-route timeouts for an LLM
// API (300 s for chat, 30 s for embeddings):
//
//	chat         /v1/chat/completions  300 s overall, 150 s per try, 2 attempts
//	responses    /v1/responses         300 s overall, 150 s per try, 2 attempts
//	completions  /v1/completions       300 s overall, 150 s per try, 2 attempts
//	embeddings   /v1/embeddings         30 s overall,  10 s per try, 3 attempts
//	default      (any other path)      breaker.Config defaults (120 s, 2 attempts)
//
// Streams on every route: first-token timeout = the per-try timeout (150 s when
// unset), idle timeout 60 s, no total timeout.
func DefaultRoutes() []Route {
	long := breaker.Config{Timeout: 300 * time.Second, PerTryTimeout: 150 * time.Second, MaxAttempts: 2}
	return []Route{
		{Name: "chat", Prefix: "/v1/chat/completions", Policy: long},
		{Name: "responses", Prefix: "/v1/responses", Policy: long},
		{Name: "completions", Prefix: "/v1/completions", Policy: long},
		{Name: "embeddings", Prefix: "/v1/embeddings", Policy: breaker.Config{Timeout: 30 * time.Second, PerTryTimeout: 10 * time.Second, MaxAttempts: 3}},
		{Name: "default", Prefix: ""},
	}
}

// Route returns the route of c.Routes named name (or with that Prefix), adding a copy of
// the default route of that name or prefix first when c has none, so that one field of
// a default route changes in one line:
//
//	cfg.Route("chat").Stream.IdleTimeout = 10 * time.Second
//	cfg.Route("embeddings").Policy.MaxAttempts = 1
//
// It returns nil when neither c nor the defaults have such a route. The pointer is into
// c.Routes: use it before the next call that adds a route.
func (c *Config) Route(name string) *Route {
	for i := range c.Routes {
		if c.Routes[i].Name == name || (name != "" && c.Routes[i].Prefix == name) {
			return &c.Routes[i]
		}
	}
	for _, d := range DefaultRoutes() {
		if d.Name == name || (name != "" && d.Prefix == name) {
			c.Routes = append(c.Routes, d)
			return &c.Routes[len(c.Routes)-1]
		}
	}
	return nil
}

const (
	defaultMaxRequestBytes  = 32 << 20
	defaultMaxResponseBytes = 64 << 20
	defaultMaxEventBytes    = 1 << 20
	defaultMaxUpstreams     = 1024
	defaultFirstToken       = 150 * time.Second
	defaultIdle             = 60 * time.Second
)

// resolved is a validated Config with its defaults filled in.
type resolved struct {
	Config
	routes      []Route // longest Prefix first
	creds       transport.Credentials
	modelHeader string // "" for none
}

func resolve(cfg Config) (*resolved, error) {
	switch {
	case cfg.MaxRequestBytes < 0:
		return nil, fmt.Errorf("llmclient: MaxRequestBytes %d is negative", cfg.MaxRequestBytes)
	case cfg.MaxResponseBytes < 0:
		return nil, fmt.Errorf("llmclient: MaxResponseBytes %d is negative", cfg.MaxResponseBytes)
	case cfg.MaxEventBytes < 0:
		return nil, fmt.Errorf("llmclient: MaxEventBytes %d is negative", cfg.MaxEventBytes)
	case cfg.MaxUpstreams < 0:
		return nil, fmt.Errorf("llmclient: MaxUpstreams %d is negative", cfg.MaxUpstreams)
	case cfg.QuotaDefaultMaxTokens < 0:
		return nil, fmt.Errorf("llmclient: QuotaDefaultMaxTokens %d is negative", cfg.QuotaDefaultMaxTokens)
	}
	r := &resolved{Config: cfg}
	r.MaxRequestBytes = orDefault(r.MaxRequestBytes, defaultMaxRequestBytes)
	r.MaxResponseBytes = orDefault(r.MaxResponseBytes, defaultMaxResponseBytes)
	r.MaxEventBytes = orDefault(r.MaxEventBytes, defaultMaxEventBytes)
	r.MaxUpstreams = orDefault(r.MaxUpstreams, defaultMaxUpstreams)
	r.QuotaDefaultMaxTokens = orDefault(r.QuotaDefaultMaxTokens, 1024)
	if r.Provider == "" {
		r.Provider = "openai"
	}
	switch r.modelHeader = cfg.ModelHeader; r.modelHeader {
	case "":
		r.modelHeader = "X-Model-Name"
	case "-":
		r.modelHeader = ""
	default:
		if !httpguts.ValidHeaderFieldName(r.modelHeader) {
			return nil, fmt.Errorf("llmclient: ModelHeader %q is not a header name", cfg.ModelHeader)
		}
	}
	if h := cfg.TenantHeader; h != "" && !httpguts.ValidHeaderFieldName(h) {
		return nil, fmt.Errorf("llmclient: TenantHeader %q is not a header name", h)
	}
	creds := cfg.CredentialHeaders
	if creds == nil {
		creds = transport.DefaultCredentials()
	}
	var err error
	if r.creds, err = creds.Canonical(); err != nil {
		return nil, fmt.Errorf("llmclient: CredentialHeaders: %w", err)
	}
	if r.routes, err = resolveRoutes(cfg.Routes); err != nil {
		return nil, err
	}
	return r, nil
}

func orDefault[T int | int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// resolveRoutes merges the configured routes into the defaults, fills in the stream
// defaults and validates every route.
func resolveRoutes(custom []Route) ([]Route, error) {
	routes := DefaultRoutes()
	for i, rt := range custom {
		if rt.Prefix != "" && !strings.HasPrefix(rt.Prefix, "/") {
			return nil, fmt.Errorf("llmclient: Routes[%d].Prefix %q does not start with /", i, rt.Prefix)
		}
		if err := rt.Stream.validate(); err != nil {
			return nil, fmt.Errorf("llmclient: Routes[%d] (%q): %w", i, rt.Prefix, err)
		}
		j := slices.IndexFunc(routes, func(d Route) bool {
			return d.Prefix == rt.Prefix && (rt.Prefix != "" || rt.Name == "" || rt.Name == d.Name)
		})
		if j < 0 {
			routes = append(routes, rt)
			continue
		}
		mergeNonZero(reflect.ValueOf(&routes[j]).Elem(), reflect.ValueOf(rt))
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
	return routes, nil
}

// mergeNonZero sets every field of dst whose counterpart in src is not zero, looking
// into nested structs field by field, so a partial Route overrides only what it sets.
func mergeNonZero(dst, src reflect.Value) {
	for i := range src.NumField() {
		s, d := src.Field(i), dst.Field(i)
		switch {
		case s.IsZero():
		case s.Kind() == reflect.Struct:
			mergeNonZero(d, s)
		default:
			d.Set(s)
		}
	}
}

// overall is the route's limit on a non-streamed call, retries, waits and fallback
// included; 0 means none.
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
