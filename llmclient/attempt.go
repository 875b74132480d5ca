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
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/internal/mesh"
	"github.com/infermesh/infermesh/tracing"
	"github.com/infermesh/infermesh/transport"
)

// errAttemptTimeout ends an attempt that ran out of its per-try time.
var errAttemptTimeout = fmt.Errorf("llmclient: attempt time limit: %w", context.DeadlineExceeded)

// attempt is one try of the call: send the request, read the reply once (Envoy's
// signals, the wait hint, the verdict of its status), then judge the answer. A
// non-streamed answer is read whole; a stream is read up to its commit point (its first
// output) and handed on from there. The policy's own ctx is not used: the call's
// context already carries its deadline, and a stream outlives the policy.
func (c *call) attempt(parent context.Context, tg *target) (*http.Response, error) {
	n := int(c.attempts.Add(1))
	ctx, cancel := c.attemptContext(parent)
	ctx, span := c.obs.StartAttempt(ctx, n)
	span.Backend(tg.name)
	a := &try{c: c, tg: tg, ctx: ctx, cancel: cancel, span: span, start: time.Now()}
	if c.info.Stream && c.op.Streams() {
		a.firstToken = time.AfterFunc(c.route.Stream.FirstTokenTimeout, func() { cancel(ErrFirstTokenTimeout) })
	}
	resp, err := a.run()
	if err != nil {
		err = a.explain(err)
		a.end(err)
		return resp, err
	}
	if _, ok := resp.Body.(*streamBody); !ok {
		a.end(nil) // a stream's attempt ends with the stream
	}
	return resp, nil
}

// attemptContext is an attempt's context: the run's, ended with a cause (the per-try
// limit of a non-streamed call, the first-token or idle timer of a stream, the end of the
// attempt). The per-try limit is a timer on that one context rather than a context of its
// own: nothing reads an attempt's deadline, and each context level costs every call.
func (c *call) attemptContext(parent context.Context) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	if pt := c.route.Policy.PerTryTimeout; pt > 0 && !c.info.Stream {
		t := time.AfterFunc(pt, func() { cancel(errAttemptTimeout) })
		return ctx, func(err error) { t.Stop(); cancel(err) }
	}
	return ctx, cancel
}

// try is one attempt in progress.
type try struct {
	c          *call
	tg         *target
	ctx        context.Context
	cancel     context.CancelCauseFunc
	span       *tracing.Attempt
	start      time.Time
	firstToken *time.Timer // a stream's first-token timeout; nil otherwise
	release    func() bool // stops the AfterFunc that closes the body when ctx ends
	hold       held        // the send's quota, until settled
	sent       *payload    // the request body sent; nil when there was none
}

// run sends the request and judges the reply.
func (a *try) run() (*http.Response, error) {
	c := a.c
	if err := a.admit(); err != nil {
		return nil, err
	}
	req, sent := c.attemptRequest(a.ctx, a.tg)
	a.sent = sent
	resp, err := c.t.base.RoundTrip(req)
	if err != nil {
		a.settle(llmwire.Usage{}, false) // it may have been sent
		return nil, err
	}
	a.observeQuota(resp)
	// Whatever ends the attempt (a timer, the caller, the stream's end) closes its
	// body too, so that a read blocked on an upstream that does not watch the
	// request's context ends as well.
	body := resp.Body
	a.release = context.AfterFunc(a.ctx, func() { body.Close() })
	env := transport.ParseEnvoy(resp)
	retryAfter, _ := transport.ParseRetryAfter(resp.Header, time.Now())
	v := mesh.HTTPVerdict(resp.StatusCode, env, retryAfter)
	a.span.HTTPStatus(resp.StatusCode)
	if env.Any() {
		a.span.Mesh(env)
	}
	switch {
	case resp.StatusCode >= 400:
		return a.errorAnswer(resp, env, v)
	case resp.StatusCode > 299:
		return resp, nil // a redirect: the caller's client follows it
	case c.info.Stream && c.op.Streams() && mediaType(resp.Header) != "application/json":
		return a.openStream(resp, env)
	}
	return a.wholeAnswer(resp, env)
}

// explain turns a failed attempt's error into what the policy judges: a timer that cut
// the attempt says so, whatever the transport made of it.
func (a *try) explain(err error) error {
	if a.firstToken != nil {
		a.firstToken.Stop()
	}
	a.observeFirst() // a hedge's delay must count the slow attempts too
	switch cause := context.Cause(a.ctx); {
	case errors.Is(cause, ErrFirstTokenTimeout):
		return &attemptError{err: ErrFirstTokenTimeout, verdict: retryableTimeout}
	case errors.Is(cause, errAttemptTimeout):
		return &attemptError{err: fmt.Errorf("llmclient: attempt %d: %w", a.c.attempts.Load(), context.DeadlineExceeded), verdict: retryableTimeout}
	case errors.Is(cause, ErrMaxStreamDuration):
		return &attemptError{err: ErrMaxStreamDuration, verdict: finalTimeout}
	}
	return err
}

// end ends the attempt: its span, its quota reservation and its context, unless a
// stream holds them.
func (a *try) end(err error) {
	a.settle(llmwire.Usage{}, false)
	if a.release != nil && err == nil {
		// The answer was read and its body closed: no goroutine needs to start to
		// close it again when the context ends.
		a.release()
	}
	a.cancel(err)
	if a.span == nil {
		return
	}
	if err == nil {
		a.span.End(nil, "")
		return
	}
	a.span.End(err, string(transport.Classify(err).Class))
}

// attemptRequest is the caller's request for one attempt to tg, with a fresh body and
// ctx, and the payload its body reads (nil when it has none).
func (c *call) attemptRequest(ctx context.Context, tg *target) (*http.Request, *payload) {
	r := c.req.WithContext(ctx) // a shallow copy: the header is shared until changed
	if tg.name != "" {
		r.URL, r.Host = tg.url, ""
	}
	r.Header = tg.header
	var sent *payload
	r.ContentLength = int64(len(tg.body))
	if len(tg.body) == 0 {
		r.Body, r.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
	} else {
		sent = newPayload(tg.body)
		r.Body = sent.reader()
		r.GetBody = func() (io.ReadCloser, error) { return sent.reader(), nil }
	}
	if trace.SpanContextFromContext(ctx).IsValid() {
		r.Header = headerCopy(r.Header, 2)
		c.t.inst.InjectHeader(ctx, r.Header)
	}
	return r, sent
}

// payload is the body an attempt sends. The attempt's request outlives the attempt (the
// transport keeps it while the answer is read, and the caller's response points to it),
// so a stream lets go of the bytes at its commit point, after which nothing is sent
// again: an open stream then keeps no copy of its prompt.
type payload struct {
	mu   sync.Mutex
	data []byte // nil once dropped
}

func newPayload(b []byte) *payload { return &payload{data: b} }

// drop lets go of the bytes; a reader made before or after reads no more of them.
func (p *payload) drop() {
	if p != nil {
		p.mu.Lock()
		p.data = nil
		p.mu.Unlock()
	}
}

// reader returns a reader of the whole payload, as net/http's GetBody wants.
func (p *payload) reader() io.ReadCloser { return &payloadReader{p: p} }

// errPayloadDropped ends a read of a body that was let go of before it was all sent: the
// upstream answered first.
var errPayloadDropped = errors.New("llmclient: request body already answered")

type payloadReader struct {
	p   *payload
	off int
}

func (r *payloadReader) Read(b []byte) (int, error) {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	switch {
	case r.p.data == nil:
		return 0, errPayloadDropped
	case r.off >= len(r.p.data):
		return 0, io.EOF
	}
	n := copy(b, r.p.data[r.off:])
	r.off += n
	return n, nil
}

func (r *payloadReader) Close() error { return nil }

// errorAnswer reads an error status's body and judges it. A strict server's 400 to the
// stream_options infermesh added is answered by sending the request again without it,
// once, and by not adding it for that host any more.
func (a *try) errorAnswer(resp *http.Response, env mesh.Envoy, v breaker.Verdict) (*http.Response, error) {
	c := a.c
	data, err := readCapped(resp.Body, resp.ContentLength, c.t.cfg.MaxResponseBytes)
	resp.Body.Close()
	if err != nil {
		data = nil // the status says enough; a broken error body changes nothing
	}
	b, _ := llmwire.ParseBody(data, false)
	a.settle(llmwire.Usage{}, true)
	if tg := a.tg; resp.StatusCode == http.StatusBadRequest && tg.injected && b.Error != nil &&
		(b.Error.Param == "stream_options" || strings.Contains(b.Error.Message, "stream_options")) {
		c.t.rememberStrict(tg.host)
		tg.body, tg.injected = tg.orig, false
		return a.run()
	}
	ae := c.newAPIError(resp.StatusCode, data, b.Error, env, v, false)
	setBody(resp, ae.body)
	return resp, ae
}

// wholeAnswer reads a 2xx body whole and judges it: an error object inside it is a
// failure (the business error a mesh cannot see). Once the headers have arrived, a
// broken or oversized body is not re-sent: the upstream has done (and billed) the work.
func (a *try) wholeAnswer(resp *http.Response, env mesh.Envoy) (*http.Response, error) {
	c := a.c
	data, err := readCapped(resp.Body, contentLength(resp), c.t.cfg.MaxResponseBytes)
	resp.Body.Close()
	json := err == nil && isJSON(resp.Header, data)
	var b llmwire.Body
	var perr error
	if json {
		b, perr = llmwire.ParseBody(data, c.obs != nil) // the one parse of the body
	}
	a.settle(b.Usage, err == nil)
	switch {
	case errors.Is(err, errTooLarge):
		return nil, tooLarge(c.t.cfg.MaxResponseBytes)
	case err != nil && a.ctx.Err() != nil:
		return nil, err // a timer or the caller cut it: explain says which
	case err != nil:
		return nil, &transport.BodyError{Err: err}
	}
	if a.firstToken != nil && !a.firstToken.Stop() {
		return nil, &attemptError{err: ErrFirstTokenTimeout, verdict: retryableTimeout}
	}
	a.observeFirst()
	setBody(resp, data)
	if !json {
		return resp, nil // audio, files and other answers pass through
	}
	if perr != nil {
		return nil, malformed(perr, false)
	}
	if b.Error != nil {
		ae := c.newAPIError(resp.StatusCode, data, b.Error, env, breaker.Verdict{}, true)
		setBody(resp, ae.body)
		return resp, ae
	}
	c.observe(b.Model, b.ID, b.FinishReasons, b.Usage)
	c.obs.Output(b.Text)
	return resp, nil
}

// contentLength is the body's expected length, or -1 when the transport decompressed it.
func contentLength(resp *http.Response) int64 {
	if resp.Uncompressed {
		return -1
	}
	return resp.ContentLength
}

// isJSON reports a JSON answer: application/json, or no content type and a body that
// starts as a JSON object.
func isJSON(h http.Header, data []byte) bool {
	mt := mediaType(h)
	return mt == "application/json" || (mt == "" && len(bytes.TrimSpace(data)) > 0 && bytes.TrimSpace(data)[0] == '{')
}

// observe records a response's facts on the call's span.
func (c *call) observe(model, id string, reasons []string, u llmwire.Usage) {
	c.obs.Response(model, id, reasons...)
	if u.Has {
		c.obs.Usage(tracing.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, TotalTokens: u.Total})
	}
}

// observeFirst tells the route's hedger how long this attempt took to its first output
// (or, for an attempt that failed or was cut before it, how long it waited), once.
func (a *try) observeFirst() {
	if h := a.c.t.hedges[a.c.routeIx]; h != nil && a.tg.name != "" && !a.start.IsZero() {
		h.hedger.Observe(a.tg.name, time.Since(a.start))
		a.start = time.Time{}
	}
}
