package llmclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/internal/mesh"
	"github.com/infermesh/infermesh/internal/sse"
	"github.com/infermesh/infermesh/tracing"
)

// openStream reads a 2xx stream up to its commit point: the first event that carries
// output (llmwire.Event.Output). The events before it are held back; an error event, a
// break, a truncation or the first-token timeout before it fail the attempt, which the
// policy may retry, and the caller never sees them. From the commit point on the caller
// reads the held-back events and then the rest as it arrives, and nothing is re-sent.
func (a *try) openStream(resp *http.Response, env mesh.Envoy) (*http.Response, error) {
	c := a.c
	s := &streamBody{
		c: c, body: resp.Body, src: newEventSource(resp, c.t.cfg.MaxEventBytes),
		kind: llmwire.KindOf(c.op), ctx: a.ctx, cancel: a.cancel, span: a.span, env: env,
		hideUsage: a.tg.injected,
	}
	if c.t.cfg.Cache != nil && c.op.Replayable() {
		s.acc = llmwire.NewAccumulator(c.op, int(c.t.cfg.Cache.MaxEntryBytes()))
	}
	if err := s.prelude(); err != nil {
		s.body.Close()
		return nil, err
	}
	if !a.firstToken.Stop() {
		// The first-token timeout fired while the first output was arriving.
		s.body.Close()
		return nil, &attemptError{err: ErrFirstTokenTimeout, verdict: retryableTimeout}
	}
	a.observeFirst()
	a.sent.drop() // committed: never sent again
	s.idle = time.AfterFunc(time.Hour, func() { a.cancel(ErrIdleTimeout) })
	s.idle.Stop()                   // armed only while the caller waits on the upstream
	s.hold, a.hold = a.hold, held{} // the stream settles its quota when it ends
	s.release = a.release
	resp.Body = s
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return resp, nil
}

// guardFallbackStream gives a fallback's stream the primary's idle timeout and tracing:
// it is committed from its first byte (a fallback is never retried).
func (c *call) guardFallbackStream(resp *http.Response) *http.Response {
	s := &streamBody{
		c: c, body: resp.Body, src: newEventSource(resp, c.t.cfg.MaxEventBytes),
		kind: llmwire.KindOf(c.op), ctx: c.ctx, cancel: func(error) { c.cancel() }, committed: true,
	}
	s.idle = time.AfterFunc(time.Hour, func() { s.idled.Store(true); c.cancel() })
	s.idle.Stop()
	resp.Body = s
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return resp
}

// streamBody is the caller's view of a stream: the events held back before the commit
// point, then the rest as it arrives. It is read by one goroutine at a time, as any
// response body; Close may come from another.
type streamBody struct {
	c      *call
	body   io.ReadCloser
	src    eventSource
	kind   llmwire.StreamKind
	ctx    context.Context // the attempt's; its cause names the timer that cut it
	cancel context.CancelCauseFunc
	span   *tracing.Attempt // nil for a fallback's stream
	env    mesh.Envoy
	idle   *time.Timer
	idled  atomic.Bool // a fallback's stream ended by its idle timer (the call's context has no cause)
	// release stops the attempt's AfterFunc that closes the body when its context ends;
	// nil for a fallback's stream.
	release func() bool

	hideUsage bool // usage was requested by infermesh, not by the caller
	committed bool // output has reached (or is queued for) the caller
	terminal  bool // the stream's proper end was seen
	upstream  *llmwire.ErrorObject
	meta      bool // the response's model and id are recorded
	acc       *llmwire.Accumulator
	usage     llmwire.Usage // the last usage the stream reported
	hold      held          // the attempt's quota, settled when the stream ends

	pending []byte // bytes queued for the caller
	held    []byte // the events read before the commit point
	chunks  int
	bytes   int64

	mu       sync.Mutex
	err      error // sticky: what Read returns once the stream has finished
	finished bool
}

// prelude reads events up to and including the commit point (or the end of a stream
// that has none). What goes wrong before it is an attempt error the policy may retry.
func (s *streamBody) prelude() error {
	limit := s.c.t.cfg.MaxResponseBytes
	for s.src.Next() {
		keep, err := s.take()
		if err != nil {
			return err
		}
		if keep {
			var ok bool
			if s.held, ok = appendCapped(s.held, s.src.Raw(), limit); !ok {
				return tooLarge(limit)
			}
		}
		if s.committed || s.terminal {
			break
		}
	}
	if !s.committed && !s.terminal {
		if err := s.src.Err(); err != nil {
			if errors.Is(err, sse.ErrEventTooLarge) {
				return tooLarge(int64(s.c.t.cfg.MaxEventBytes))
			}
			return brokenBeforeOutput(err)
		}
		return brokenBeforeOutput(ErrStreamTruncated)
	}
	if s.upstream != nil {
		// A Responses stream that failed before any output: the upstream's failure.
		return s.c.newAPIError(http.StatusOK, nil, s.upstream, s.env, breaker.Verdict{}, true)
	}
	s.committed = true
	s.pending, s.held = s.held, nil
	return nil
}

// take reads the current event: it records what the event says and reports whether the
// caller sees it. An error event becomes an *APIError, malformed JSON an error.
func (s *streamBody) take() (keep bool, err error) {
	ev, err := llmwire.ParseEvent(s.kind, s.src.Name(), s.src.Data())
	s.mu.Lock() // a Close from another goroutine reads what this records
	defer s.mu.Unlock()
	if err != nil {
		return false, malformed(err, !s.committed)
	}
	if ev.Error != nil && !ev.Terminal {
		return false, s.c.newAPIError(http.StatusOK, nil, ev.Error, s.env, breaker.Verdict{}, true)
	}
	s.terminal = s.terminal || ev.Terminal
	if ev.Choices {
		s.terminal = ev.Terminal // a chat stream that goes on is not finished
	}
	if ev.Error != nil { // response.failed
		s.upstream = ev.Error
	}
	s.record(&ev)
	if ev.Output {
		if !s.committed {
			s.c.obs.FirstChunk(time.Now())
		}
		s.committed = true
		s.chunks++
		s.c.obs.Chunk()
	}
	return !(ev.UsageOnly && s.hideUsage), nil
}

// record keeps what tracing and the cache need of an event.
func (s *streamBody) record(ev *llmwire.Event) {
	if !s.meta && (ev.Model != "" || ev.ID != "") {
		s.c.obs.Response(ev.Model, ev.ID)
		s.meta = true
	}
	if len(ev.FinishReasons) > 0 {
		s.c.obs.Response("", "", ev.FinishReasons...)
	}
	if ev.Usage.Has {
		s.c.observe("", "", nil, ev.Usage)
		s.usage = ev.Usage
	}
	s.c.obs.Output(ev.Text)
	if s.acc != nil {
		s.acc.Add(ev)
	}
}

// Read hands the caller the stream's bytes, event by event.
func (s *streamBody) Read(p []byte) (int, error) {
	if err := s.sticky(); err != nil {
		return 0, err // after Close too: what was queued is not delivered
	}
	for len(s.pending) == 0 {
		s.advance()
		if err := s.sticky(); err != nil && len(s.pending) == 0 {
			return 0, err
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	if len(s.pending) == 0 {
		s.pending = nil // the held-back events go as soon as they are read
	}
	s.bytes += int64(n)
	return n, nil
}

func (s *streamBody) sticky() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// advance reads the next event into pending, or ends the stream. The idle timer runs
// only while it waits on the upstream.
func (s *streamBody) advance() {
	s.idle.Reset(s.c.route.Stream.IdleTimeout)
	more := s.src.Next()
	s.idle.Stop()
	if !more {
		s.finish(s.endError())
		return
	}
	keep, err := s.take()
	if err != nil {
		if errors.As(err, new(*APIError)) {
			err = errors.Join(ErrUpstreamEvent, err)
		}
		s.finish(&StreamError{Chunks: s.chunks, Bytes: s.bytes, Err: err})
		return
	}
	if keep {
		s.pending = s.src.Raw()
	}
}

// endError is how a stream whose events ran out ended: well after its terminal event,
// or with the caller's typed error naming the timer or the break that cut it.
func (s *streamBody) endError() error {
	err := s.src.Err()
	if err == nil && s.terminal {
		return nil
	}
	cause := context.Cause(s.ctx)
	switch {
	case s.idled.Load():
		err = ErrIdleTimeout
	case errors.Is(cause, ErrIdleTimeout), errors.Is(cause, ErrMaxStreamDuration):
		err = cause
	case s.c.ctx.Err() != nil:
		err = context.Cause(s.c.ctx)
	case err == nil:
		err = ErrStreamTruncated
	case errors.Is(err, sse.ErrEventTooLarge):
		err = errors.Join(ErrResponseTooLarge, err)
	default:
		err = errors.Join(ErrStreamBroken, err)
	}
	return &StreamError{Chunks: s.chunks, Bytes: s.bytes, Err: err}
}

// finish ends the stream once: err is what Read returns from now on (io.EOF when nil).
func (s *streamBody) finish(err error) {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	s.finished = true
	s.err = err
	if err == nil {
		s.err = io.EOF
	}
	var good []byte
	usage, hold := s.usage, s.hold
	s.hold = held{}
	if err == nil && s.terminal && s.upstream == nil && s.acc != nil {
		good, _ = s.acc.Body()
	}
	class := ""
	switch {
	case err != nil:
		class = string(breaker.ClassOf(err))
	case s.upstream != nil:
		class = string(breaker.ClassServerError) // a response.failed delivered as sent
	}
	s.mu.Unlock()

	s.idle.Stop()
	s.body.Close()
	if s.release != nil {
		s.release() // closed above: nothing left for the attempt's AfterFunc to do
	}
	s.cancel(io.EOF)
	s.c.settle(hold, usage, false)
	s.c.remember(good)
	if s.span != nil {
		s.span.End(err, class)
	}
	s.c.obs.End(err, class)
	s.c.cancel()
}

// abandon ends a stream that lost a hedge race: its connection and its attempt, nothing
// of the call (which the winner holds).
func (s *streamBody) abandon() {
	s.mu.Lock()
	done := s.finished
	s.finished, s.err = true, errHedgeLost
	hold := s.hold
	s.hold = held{}
	s.mu.Unlock()
	if done {
		return
	}
	s.c.settle(hold, s.usage, false)
	s.idle.Stop()
	s.cancel(errHedgeLost)
	s.body.Close()
	if s.span != nil {
		s.span.End(errHedgeLost, string(breaker.ClassCanceled))
	}
}

// Close ends the stream early (or after its end): the connection is released.
func (s *streamBody) Close() error {
	s.finish(nil)
	return nil
}
