package llmclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/internal/deadline"
	"github.com/infermesh/infermesh/internal/header"
	"github.com/infermesh/infermesh/tracing"
	"github.com/infermesh/infermesh/transport"
)

// NewHTTPClient returns an *http.Client whose transport carries every resilience
// behaviour of infermesh; hand it to go-openai unchanged:
//
//	cfg := openai.DefaultConfig(key)
//	cfg.HTTPClient = hc
//
// The client has no Timeout: a total timeout would cut long streams. Deadlines come
// from the routes (non-streamed calls) and the stream policies (streamed calls), and
// from the caller's context. A redirect to another host never carries the
// Authorization header (net/http's rule, kept).
func NewHTTPClient(cfg Config) (*http.Client, error) {
	t, err := NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
}

// Transport is the RoundTripper inside [NewHTTPClient]'s client. Its layers, outer to
// inner:
//
//	tracing        one span per logical call, usage and time to first chunk
//	  fallback     when the policy gives up on a trigger, ordered fallback targets
//	    policy     per route and upstream host: time limit, retry + budget, breaker
//	      attempt  per-try limit (first-token timeout for streams), Envoy signals,
//	               error objects in 200 bodies and streams
//	        compression (optional), then the pooled base transport
//
// It is safe for concurrent use.
type Transport struct {
	cfg   *resolved
	base  http.RoundTripper
	inst  *tracing.Instrumenter
	chain *fallback.Chain

	mu       sync.RWMutex
	policies map[policyKey]*breaker.Policy

	// deadlines enforces attempt, first-token and idle limits on one runtime timer.
	deadlines deadline.Scheduler
}

var _ http.RoundTripper = (*Transport)(nil)

type policyKey struct {
	route int
	host  string
}

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
	return &Transport{cfg: r, base: base, inst: inst, chain: chain, policies: make(map[policyKey]*breaker.Policy)}, nil
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

// State returns the breaker state for the route that path takes and the upstream host,
// for dashboards and tests. A breaker that has not seen a call yet is closed.
func (t *Transport) State(path, host string) breaker.State {
	t.mu.RLock()
	p := t.policies[policyKey{t.cfg.route(path), host}]
	t.mu.RUnlock()
	if p == nil {
		return breaker.StateClosed
	}
	return p.State()
}

// policy returns the breaker policy of a route and upstream host, creating it once.
func (t *Transport) policy(route int, host string) *breaker.Policy {
	k := policyKey{route, host}
	t.mu.RLock()
	p := t.policies[k]
	t.mu.RUnlock()
	if p != nil {
		return p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p = t.policies[k]; p != nil {
		return p
	}
	rt := t.cfg.routes[route]
	pc := rt.Policy
	pc.Name = rt.Name + " " + host
	// The route's time limits are applied as request context deadlines (see runUnary
	// and attemptUnary; streams have their own): the requests honour their context, so
	// the breaker's time limiter, which hands each attempt to another goroutine, would
	// only add that hand-off's cost to every call.
	pc.Timeout, pc.PerTryTimeout = breaker.NoTimeout, breaker.NoTimeout
	if pc.Classifier == nil {
		pc.Classifier = transport.Classify
	}
	pc.Hooks = t.hooks(rt.Policy.Hooks)
	p, err := breaker.New(pc)
	if err != nil {
		// resolve validated this configuration; only the name and hooks changed.
		panic(fmt.Sprintf("llmclient: route %q: %v", rt.Name, err))
	}
	t.policies[k] = p
	return p
}

// call is the state of one logical call, shared by its attempts.
type call struct {
	t       *Transport
	req     *http.Request // the caller's request; its body has been read into body
	body    []byte        // what each attempt sends
	info    requestInfo
	route   *Route
	secret  string
	obs     *tracing.Call
	ctx     context.Context // the caller's context with the logical span
	attempt atomic.Int32

	streamCtx    context.Context         // parent of a stream's attempts; outlives the policy
	streamCancel context.CancelCauseFunc // ends streamCtx

	// Held here rather than allocated per call: the overall deadline of a
	// non-streamed call, and the context and deadline entry of its first attempt
	// (later attempts get their own, since the transport may still read an
	// earlier attempt's context after it returned).
	started time.Time // when a non-streamed call with an overall limit began
	overall deadlineCtx
	first   attemptLimit
	token   cancelAt // a stream's first attempt's first-token timeout
}

// cancelAt cancels a context with a cause at a deadline, on the transport's
// scheduler: an attempt's limit, or a stream attempt's first-token timeout.
type cancelAt struct {
	cancel context.CancelCauseFunc
	cause  error
	expiry deadline.Entry
}

func (l *cancelAt) schedule(s *deadline.Scheduler, at time.Time, cancel context.CancelCauseFunc, cause error) {
	l.cancel, l.cause = cancel, cause
	s.Schedule(&l.expiry, at, l.expire)
}

func (l *cancelAt) expire() { l.cancel(l.cause) }

// attemptLimit is an attempt's context and what cancels it at its deadline.
type attemptLimit struct {
	ctx deadlineCtx
	cancelAt
}

// RoundTrip runs one logical call.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readRequestBody(req, t.cfg.MaxRequestBytes)
	if err != nil {
		return nil, err
	}
	info := peekRequest(body)
	ri := t.cfg.route(req.URL.Path)
	c := &call{t: t, req: req, body: body, info: info, route: &t.cfg.routes[ri], secret: bearer(req.Header)}
	if info.stream && !info.includeUsage {
		// Usage is asked for so it can be traced; the extra chunk is kept from a
		// caller who did not ask for it.
		if b, ok := withIncludeUsage(body, info.streamOptions); ok {
			c.body = b
		}
	}
	c.ctx, c.obs = t.inst.Start(req.Context(), tracing.Request{
		Operation:     operationName(req.URL.Path),
		Provider:      t.cfg.Provider,
		Model:         info.model,
		Stream:        info.stream,
		ServerAddress: req.URL.Hostname(),
		ServerPort:    port(req.URL),
		RequestID:     header.Get(req.Header, "X-Request-Id"),
	})
	pol := t.policy(ri, req.URL.Host)
	if err := c.tooLateForPrimary(); err != nil {
		return c.failed(nil, err)
	}
	if info.stream {
		return c.runStream(pol)
	}
	return c.runUnary(pol)
}

// tooLateForPrimary reports, when a fallback could serve the call instead, that the
// caller's deadline leaves less than the route's minimum try time: the primary is not
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
		minTry = defaultMinTryTime
	}
	if left := time.Until(deadline); left < minTry {
		return fmt.Errorf("llmclient: %w: %v left, the route needs %v for a try", breaker.ErrDeadlineTooShort, left.Round(time.Millisecond), minTry)
	}
	return nil
}

// runUnary runs a non-streamed call through the policy and, when it gives up on a
// trigger, the fallback chain.
func (c *call) runUnary(pol *breaker.Policy) (*http.Response, error) {
	ctx := c.ctx
	if to := c.route.overall(); to > 0 {
		c.started = time.Now()
		c.overall = deadlineCtx{Context: ctx, deadline: c.started.Add(to)}
		ctx = &c.overall
	}
	resp, err := breaker.Do(ctx, pol, c.attemptUnary)
	c.traceBreaker(pol)
	if err == nil {
		if c.t.cfg.Cache != nil {
			c.t.cfg.Cache.Store(c.fallbackRequest(nil), c.bufferedBody(resp))
		}
		c.obs.End(nil, "")
		return resp, nil
	}
	return c.failed(resp, err)
}

// traceBreaker records the breaker state the call saw, when the call is traced:
// reading it costs a lock and a clock read, for nothing when it is not.
func (c *call) traceBreaker(pol *breaker.Policy) {
	if c.obs != nil {
		c.obs.Breaker(pol.State().String())
	}
}

// failed decides what the caller gets when the policy gave up with err; resp is the
// last attempt's response, if it produced one.
func (c *call) failed(resp *http.Response, err error) (*http.Response, error) {
	v := classify(err)
	if c.t.chain.Triggered(err, v) {
		// The fallback's answer is read after RoundTrip returns, so its context ends
		// when its body is closed, not here.
		fctx, cancel := context.WithCancelCause(c.ctx)
		fresp, ferr := c.t.chain.Serve(fctx, c.fallbackRequest(err), v)
		if ferr == nil {
			if resp != nil {
				resp.Body.Close()
			}
			c.obs.Fallback(fresp.Header.Get(fallback.HeaderFallback))
			if c.info.stream && isEventStream(fresp) {
				return c.guardFallbackStream(fresp, fctx, cancel), nil
			}
			fresp.Body = &cancelOnClose{ReadCloser: fresp.Body, cancel: cancel}
			c.obs.End(nil, "")
			return fresp, nil
		}
		cancel(ferr)
		err = fmt.Errorf("%w; fallback: %w", err, ferr)
	}
	c.obs.End(err, string(v.Class))
	var ae *APIError
	if resp != nil && errors.As(err, &ae) && !ae.InBody {
		// The RoundTripper contract: a response was obtained, so it is returned with a
		// nil error and the caller (go-openai) decodes the upstream's error body.
		return resp, nil
	}
	if resp != nil {
		resp.Body.Close()
	}
	return nil, err
}

// attemptUnary is one try of a non-streamed call. It reads the whole body, so the
// response it returns no longer depends on the attempt's context.
//
// The policy's ctx is read only for its deadline (the call's): the attempt's own
// context derives from the call's ctx, which ends with the caller's as the policy's
// would, and spares the policy's the cost of a context of its own, made on first use.
func (c *call) attemptUnary(pctx context.Context) (*http.Response, error) {
	n := int(c.attempt.Add(1))
	ctx := c.ctx
	deadline, limited := pctx.Deadline()
	if pt := c.route.Policy.PerTryTimeout; pt > 0 {
		now := c.started // the first attempt starts with the call: one clock read serves both
		if n > 1 || now.IsZero() {
			now = time.Now()
		}
		if d := now.Add(pt); !limited || d.Before(deadline) {
			deadline, limited = d, true
		}
	}
	if limited {
		// One deadline per attempt enforces both its own limit and the call's, on the
		// transport's shared scheduler rather than a runtime timer of its own.
		l := &c.first
		if n > 1 {
			l = new(attemptLimit)
		}
		actx, cancel := context.WithCancelCause(ctx)
		l.ctx = deadlineCtx{Context: actx, deadline: deadline}
		l.schedule(&c.t.deadlines, deadline, cancel, errAttemptDeadline)
		defer func() {
			l.expiry.Stop()
			cancel(nil)
		}()
		ctx = &l.ctx
	}
	actx, a := c.obs.StartAttempt(ctx, n)
	resp, err := c.t.base.RoundTrip(c.attemptRequest(actx))
	if err == nil {
		env := c.meshSignals(resp, a)
		resp, err = c.judgeWhole(resp, env)
	}
	if err != nil && (errors.Is(context.Cause(ctx), errAttemptDeadline) || ctx.Err() == context.DeadlineExceeded) {
		// Whatever the transport made of it, the attempt ran out of time; the policy
		// retries it if the overall deadline still leaves room.
		err = &attemptError{err: fmt.Errorf("llmclient: attempt %d: %w", n, context.DeadlineExceeded),
			verdict: breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassTimeout}}
		resp = nil
	}
	endAttempt(a, err)
	return resp, err
}

// judgeWhole reads a whole response body (and closes it) and judges the answer: an
// error status is an *APIError, as is an error object inside a 2xx body, and a body
// that is not the JSON it claims to be is malformed. The response it returns holds
// the body in memory, so it no longer depends on the attempt's context.
func (c *call) judgeWhole(resp *http.Response, env transport.Envoy) (*http.Response, error) {
	size := resp.ContentLength
	if resp.Uncompressed {
		size = -1 // the length was that of the compressed body
	}
	data, err := readCapped(resp.Body, size, c.t.cfg.MaxResponseBytes)
	resp.Body.Close()
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, tooLarge(c.t.cfg.MaxResponseBytes)
		}
		return nil, brokenBeforeContent(err)
	}
	setBody(resp, scrubBody(data, resp.StatusCode, c.secret))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, newAPIError(resp, data, env, false, c.secret)
	}
	if err := c.inspectBody(resp, data, env); err != nil {
		return resp, err
	}
	return resp, nil
}

// attemptRequest is the caller's request for one attempt, with a fresh body and ctx.
func (c *call) attemptRequest(ctx context.Context) *http.Request {
	r := c.req.WithContext(ctx) // a shallow copy: the header is shared until changed
	r.Body = newReplayBody(c.body)
	r.ContentLength = int64(len(c.body))
	r.GetBody = c.getBody
	if trace.SpanContextFromContext(ctx).IsValid() {
		r.Header = r.Header.Clone()
		c.t.inst.InjectHeader(ctx, r.Header)
	}
	return r
}

// getBody replays the request body, for a redirect or a transport's own retry.
func (c *call) getBody() (io.ReadCloser, error) { return newReplayBody(c.body), nil }

// newReplayBody reads a request body held in memory. It is a NopCloser around a
// *bytes.Reader on purpose: net/http recognises that pair as in memory and sends the
// headers and body in one write; any other body type costs an extra write (and packet)
// per request.
func newReplayBody(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

// fallbackRequest describes the call to a fallback target.
func (c *call) fallbackRequest(cause error) *fallback.Request {
	return &fallback.Request{
		HTTP:         c.req,
		Body:         c.originalBody(),
		Operation:    operationPath(c.req.URL.Path),
		Model:        c.info.model,
		Stream:       c.info.stream,
		IncludeUsage: c.info.includeUsage,
		Cause:        cause,
	}
}

// originalBody is the body as the caller sent it: without the include_usage that
// infermesh may have added.
func (c *call) originalBody() []byte {
	if c.info.stream && !c.info.includeUsage {
		return c.info.raw
	}
	return c.body
}

func (c *call) bufferedBody(resp *http.Response) []byte {
	if b, ok := resp.Body.(*bufferedBody); ok {
		return b.data
	}
	return nil
}

// classify is the verdict on a policy's final error.
func classify(err error) breaker.Verdict {
	var be *breaker.Error
	if errors.As(err, &be) {
		return be.Verdict
	}
	return transport.Classify(err)
}

func bearer(h http.Header) string {
	a := header.Get(h, "Authorization")
	if k, ok := strings.CutPrefix(a, "Bearer "); ok {
		return k
	}
	if k := header.Get(h, "Api-Key"); k != "" {
		return k
	}
	return a
}

// meshSignals reads the Envoy signals of an attempt's response and records them.
func (c *call) meshSignals(resp *http.Response, a *tracing.Attempt) transport.Envoy {
	env := transport.ParseEnvoy(resp)
	a.HTTPStatus(resp.StatusCode)
	if env.UpstreamServiceTime > 0 || env.Overloaded || env.AttemptCount > 0 {
		m := tracing.Mesh{UpstreamServiceTime: env.UpstreamServiceTime, Overloaded: env.Overloaded, AttemptCount: env.AttemptCount}
		a.Mesh(m)
		c.obs.Mesh(m)
	}
	return env
}

// endAttempt ends an attempt's span with the error's class.
func endAttempt(a *tracing.Attempt, err error) {
	if a == nil {
		return
	}
	if err == nil {
		a.End(nil, "")
		return
	}
	a.End(err, string(transport.Classify(err).Class))
}

// cancelOnClose ends a response's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(errBodyClosed)
	return err
}

var errBodyClosed = errors.New("llmclient: response body closed")

// errAttemptDeadline cancels an attempt that ran out of time.
var errAttemptDeadline = fmt.Errorf("llmclient: attempt time limit: %w", context.DeadlineExceeded)

// deadlineCtx reports a deadline that something else enforces: for the route's overall
// limit, the policy reads it to decide whether a retry still fits and each attempt
// enforces it; for an attempt, the transport's deadline scheduler cancels the context.
// (A runtime timer per call and per attempt would wake the network poller each time.)
type deadlineCtx struct {
	context.Context
	deadline time.Time
}

// Deadline is the earlier of the call's deadline and the parent's.
func (d *deadlineCtx) Deadline() (time.Time, bool) {
	if pd, ok := d.Context.Deadline(); ok && pd.Before(d.deadline) {
		return pd, true
	}
	return d.deadline, true
}
