package llmclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/tracing"
	"github.com/infermesh/infermesh/transport"
)

// NewHTTPClient returns an *http.Client whose transport carries every resilience
// behaviour of infermesh; hand it to go-openai or openai-go unchanged:
//
//	cfg := openai.DefaultConfig(key)                  // go-openai
//	cfg.HTTPClient = hc
//
//	client := openai.NewClient(option.WithHTTPClient(hc)) // openai-go
//
// The client has no Timeout: a total timeout would cut long streams. Deadlines come
// from the routes (non-streamed calls) and the stream policies (streamed calls), and
// from the caller's context. A redirect to another host carries none of the credential
// headers (Config.CredentialHeaders), where net/http drops only Authorization.
func NewHTTPClient(cfg Config) (*http.Client, error) {
	t, err := NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t, CheckRedirect: t.cfg.creds.CheckRedirect}, nil
}

// Transport is the RoundTripper inside [NewHTTPClient]'s client. Its layers, outer to
// inner:
//
//	tracing        one span per logical call, usage and time to first chunk
//	  fallback     when the policy gives up on a trigger, ordered fallback targets,
//	               within what is left of the route's time
//	    policy     per route and upstream host: retry + budget, breaker
//	      attempt  per-try limit (first-token timeout for streams), Envoy signals,
//	               error objects in 200 bodies and streams, the commit point
//	        compression (optional), then the pooled base transport
//
// It is safe for concurrent use.
type Transport struct {
	cfg      *resolved
	base     http.RoundTripper
	inst     *tracing.Instrumenter
	chain    *fallback.Chain
	policies *policies
	judged   judged     // failures already given to an SDK that may retry them itself
	steering *steering  // nil: calls go where the caller sent them
	hedges   []*hedging // per route; nil where the route does not hedge

	// noUsage holds the hosts that answered 400 to stream_options: infermesh no longer
	// adds include_usage for them. At most MaxUpstreams are kept (noUsageN counts them);
	// past that, a strict host costs one more request per stream, never an error.
	noUsage  sync.Map // host -> struct{}
	noUsageN atomic.Int64
}

// rememberStrict records a host that refuses stream_options, within the bound.
func (t *Transport) rememberStrict(host string) {
	if t.noUsageN.Load() >= int64(t.cfg.MaxUpstreams) {
		return
	}
	if _, known := t.noUsage.LoadOrStore(host, struct{}{}); !known {
		t.noUsageN.Add(1)
	}
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport validates cfg and returns the transport behind [NewHTTPClient].
func NewTransport(cfg Config) (*Transport, error) {
	r, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	base := cfg.Base
	if base == nil {
		t, err := transport.New(cfg.Transport)
		if err != nil {
			return nil, fmt.Errorf("llmclient: Transport: %w", err)
		}
		base = t
	}
	if cfg.Compression != nil {
		c, err := transport.NewCompressor(base, *cfg.Compression)
		if err != nil {
			return nil, fmt.Errorf("llmclient: Compression: %w", err)
		}
		base = c
	}
	chain, err := fallback.New(cfg.Fallback)
	if err != nil {
		return nil, fmt.Errorf("llmclient: Fallback: %w", err)
	}
	tc := cfg.Tracing
	if tc.Propagator == nil {
		tc.Propagator = w3cUnlessGlobal{}
	}
	inst, err := tracing.New(tc)
	if err != nil {
		return nil, fmt.Errorf("llmclient: Tracing: %w", err)
	}
	st, err := newSteering(cfg.Steering)
	if err != nil {
		return nil, err
	}
	t := &Transport{cfg: r, base: base, inst: inst, chain: chain, steering: st}
	if t.hedges, err = newHedges(r.routes, st); err != nil {
		return nil, err
	}
	t.policies = newPolicies(t, r.MaxUpstreams)
	return t, nil
}

// SetWeights changes the weights of the steering's backends while calls run: backends
// not named keep theirs. It is an atomic swap: the next call uses the new weights, and
// no call waits or fails. It returns an error (and changes nothing) for an unknown
// backend or a weight out of range, and when the transport has no Steering.
func (t *Transport) SetWeights(weights map[string]int) error {
	if t.steering == nil {
		return errors.New("llmclient: SetWeights: the transport has no Steering")
	}
	if err := t.steering.router.SetWeights(weights); err != nil {
		return fmt.Errorf("llmclient: %w", err)
	}
	return nil
}

// Unwrap returns the transport the attempts go through.
func (t *Transport) Unwrap() http.RoundTripper { return t.base }

// CloseIdleConnections closes the idle connections of the base transport and of the
// fallback endpoints.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	for _, tg := range t.cfg.Fallback.Targets {
		if c, ok := tg.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

// State returns the breaker state for the route that path takes and the upstream host
// (with Steering: the backend's name), for dashboards and tests. A breaker that has not
// seen a call yet is closed.
func (t *Transport) State(path, host string) breaker.State {
	if p := t.policies.get(t.cfg.route(path), host); p != nil {
		return p.State()
	}
	return breaker.StateClosed
}

// Headers infermesh sets on every response it returns, and the SDK header it honours.
const (
	// HeaderAttempts is the number of upstream attempts infermesh made for the call.
	HeaderAttempts = "X-Infermesh-Attempts"
	// HeaderErrorClass is the class of the failure (breaker.Class), on error answers.
	HeaderErrorClass = "X-Infermesh-Error-Class"
	// headerShouldRetry tells the official SDKs (openai-go and its siblings) whether to
	// retry: infermesh has already applied its own policy, so they must not.
	headerShouldRetry = "X-Should-Retry"
	// headerSDKRetry is the retry count the official SDKs send with each try.
	headerSDKRetry = "X-Stainless-Retry-Count"
)

// call is the state of one logical call, shared by its attempts.
type call struct {
	t       *Transport
	req     *http.Request // the caller's request; its body has been read into orig
	orig    []byte        // the body as the caller sent it
	info    llmwire.Request
	op      llmwire.Op
	routeIx int
	route   *Route
	host    string
	// who is the caller's identity, worked out when first needed (a failure to scrub, a
	// cached reply, an SDK's retry): most calls never need it.
	who struct {
		once    sync.Once
		secrets []string // the caller's credential values, scrubbed from errors
		tenant  string   // the credentials' fingerprint and the tenant header
	}
	obs    *tracing.Call
	ctx    context.Context // the caller's context with the call's span and deadline
	cancel context.CancelFunc

	attempts  atomic.Int32
	judgedKey judgedKey
	served    *target  // where the answer came from
	release   []func() // run when the call ends: steering's in-flight counts
}

// RoundTrip runs one logical call: request → route → policy → attempt → transport →
// verdict → tracing → fallback.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c, err := t.newCall(req)
	if err != nil {
		return nil, err
	}
	if err, ok := t.judged.repeat(c); ok {
		// An SDK retrying a call infermesh already failed: the same answer, at once.
		c.cancel()
		return nil, err
	}
	resp, err := c.run()
	if err != nil {
		t.judged.remember(c, err)
	}
	return resp, err
}

// identify works out the caller's identity once: the secrets to scrub (the caller's
// credentials, and the steering's backend keys, which a backend may echo) and the tenant
// (the credentials' fingerprint, and the value of Config.TenantHeader when one is set).
func (c *call) identify() {
	c.who.once.Do(func() {
		t, h := c.t, c.req.Header
		c.who.secrets = t.cfg.creds.Secrets(h)
		if t.steering != nil {
			c.who.secrets = append(c.who.secrets, t.steering.keys...)
		}
		c.who.tenant = t.cfg.creds.Fingerprint(h)
		if t.cfg.TenantHeader != "" {
			c.who.tenant += "/" + strconv.Quote(h.Get(t.cfg.TenantHeader))
		}
	})
}

// secrets are the values scrubbed from what the call returns; see identify.
func (c *call) secrets() []string { c.identify(); return c.who.secrets }

// tenant identifies the caller for the cache and the SDK-retry memory; see identify.
func (c *call) tenant() string { c.identify(); return c.who.tenant }

// newCall reads the request and starts the call's span and deadline.
func (t *Transport) newCall(req *http.Request) (*call, error) {
	body, err := readRequestBody(req, t.cfg.MaxRequestBytes)
	if err != nil {
		return nil, err
	}
	ri := t.cfg.route(req.URL.Path)
	c := &call{
		t: t, req: req, orig: body,
		op: llmwire.OpOf(req.URL.Path), routeIx: ri, route: &t.cfg.routes[ri], host: req.URL.Host,
	}
	c.info, _ = llmwire.ParseRequest(body) // a body that is not JSON goes as it is
	addr, port := tracing.ServerFromURL(req.URL)
	ctx, obs := t.inst.Start(req.Context(), tracing.Request{
		Operation:     c.op.Name(req.URL.Path),
		Provider:      t.cfg.Provider,
		Model:         c.info.Model,
		Stream:        c.info.Stream,
		ServerAddress: addr,
		ServerPort:    port,
		RequestID:     req.Header.Get("X-Request-Id"),
	})
	c.obs = obs
	if obs.CaptureContent() {
		obs.Content(llmwire.Prompt(c.op, body), "")
	}
	// A non-streamed call is bounded as a whole, fallback included; a stream only by
	// MaxStreamDuration (its first-token and idle timeouts guard the rest). One context
	// does both jobs: the limit, and the end of the call's work when it is over.
	switch {
	case !c.info.Stream && c.route.overall() > 0:
		c.ctx, c.cancel = context.WithTimeoutCause(ctx, c.route.overall(), breaker.ErrTimeout)
	case c.info.Stream && c.route.Stream.MaxStreamDuration > 0:
		c.ctx, c.cancel = context.WithTimeoutCause(ctx, c.route.Stream.MaxStreamDuration, ErrMaxStreamDuration)
	default:
		c.ctx, c.cancel = context.WithCancel(ctx)
	}
	return c, nil
}

// run runs the call on its target (with Steering, a backend it picks, and with
// Hedge, maybe a second one) through the target's policy and, when the policy gives up
// on a trigger, the fallback chain.
func (c *call) run() (*http.Response, error) {
	if err := c.tooLateForPrimary(); err != nil {
		return c.failed(nil, err)
	}
	var resp *http.Response
	var err error
	switch {
	case c.t.steering == nil:
		resp, err = c.runOn(c.ctx, c.ownTarget())
	case c.t.hedges[c.routeIx] != nil:
		resp, err = c.race(c.t.hedges[c.routeIx])
	default:
		var tg *target
		if tg, err = c.pick(nil); err == nil {
			resp, err = c.runOn(c.ctx, tg)
		}
	}
	if err != nil {
		return c.failed(resp, err)
	}
	return c.succeeded(resp), nil
}

// runOn runs the call on one target through that target's breaker policy: retries
// with a budget, the breaker, and the attempts.
func (c *call) runOn(ctx context.Context, tg *target) (*http.Response, error) {
	pe := c.t.policies.acquire(c.routeIx, tg.key)
	defer c.t.policies.release(pe)
	resp, err := breaker.Do(ctx, pe.p, func(context.Context) (*http.Response, error) { return c.attempt(ctx, tg) })
	if c.obs != nil {
		c.obs.Breaker(pe.p.State().String())
	}
	if err == nil {
		c.served = tg
	}
	return resp, err
}

// end runs what waits for the call's end.
func (c *call) end() {
	for _, f := range c.release {
		f()
	}
	c.release = nil
}

// tooLateForPrimary reports, when a fallback could serve the call instead, that the
// call's deadline leaves less than the route's minimum try time: the primary is not
// tried at all then.
func (c *call) tooLateForPrimary() error {
	if c.t.chain.Empty() {
		return nil
	}
	deadline, ok := c.ctx.Deadline()
	if !ok {
		return nil
	}
	minTry := c.route.Policy.MinTryTime
	if minTry <= 0 {
		minTry = breaker.DefaultMinTryTime
	}
	if left := time.Until(deadline); left < minTry {
		return fmt.Errorf("llmclient: %w: %v left, the route needs %v for a try", breaker.ErrDeadlineTooShort, left.Round(time.Millisecond), minTry)
	}
	return nil
}

// succeeded marks a good answer and keeps it for the cache. A stream is recorded, and
// its span ended, when it ends.
func (c *call) succeeded(resp *http.Response) *http.Response {
	c.mark(resp.Header)
	if _, ok := resp.Body.(*streamBody); ok {
		if c.t.cfg.Cache == nil && c.served != nil {
			// Nothing reads the request body again: no retry, no fallback and no cache
			// key once a stream is open, so it does not keep its prompt.
			c.orig, c.served.orig, c.served.body = nil, nil, nil
		}
		return resp
	}
	c.remember(c.bufferedBody(resp))
	c.cancel()
	c.end()
	c.obs.End(nil, "")
	return resp
}

// mark sets infermesh's headers on a response it returns.
func (c *call) mark(h http.Header) {
	// The names are canonical already: set without canonicalizing them on every call.
	h[HeaderAttempts] = []string{strconv.Itoa(int(c.attempts.Load()))}
	h[headerShouldRetry] = []string{"false"}
	if c.served != nil && c.served.name != "" {
		h[HeaderBackend] = []string{c.served.name}
	}
}

// remember stores a good reply of a completion-style call as its last good answer.
func (c *call) remember(body []byte) {
	if c.t.cfg.Cache != nil && c.op.Replayable() && len(body) > 0 {
		c.t.cfg.Cache.Store(c.fallbackRequest(nil), body)
	}
}

// fallbackRequest describes the call to a fallback target.
func (c *call) fallbackRequest(cause error) *fallback.Request {
	return &fallback.Request{
		HTTP:         c.req,
		Body:         c.orig,
		Operation:    llmwire.OperationPath(c.req.URL.Path),
		Model:        c.info.Model,
		Stream:       c.info.Stream,
		IncludeUsage: c.info.IncludeUsage,
		Cause:        cause,
		Tenant:       c.tenant(),
		Credentials:  c.t.cfg.creds,
	}
}

func (c *call) bufferedBody(resp *http.Response) []byte {
	if b, ok := resp.Body.(*bufferedBody); ok {
		return b.data
	}
	return nil
}
