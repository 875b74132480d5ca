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
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/internal/deadline"
	"github.com/infermesh/infermesh/internal/sse"
	"github.com/infermesh/infermesh/internal/wire"
	"github.com/infermesh/infermesh/transport"
)

// runStream runs a streamed call. The policy governs only the part of the stream
// before its first content chunk, which is the only part that may be retried or fail
// over: each attempt has the first-token timeout instead of a per-try limit, and there
// is no overall limit unless MaxStreamDuration is set.
func (c *call) runStream(pol *breaker.Policy) (*http.Response, error) {
	sp := c.route.Stream
	c.streamCtx = c.ctx
	if sp.MaxStreamDuration > 0 {
		// A deadline rather than a timer, so that the policy never waits for a retry
		// that could not start before it. Without one, the stream needs no context
		// of its own: each attempt's ends with the attempt or the stream.
		dctx, dcancel := context.WithDeadlineCause(c.ctx, time.Now().Add(sp.MaxStreamDuration), ErrMaxStreamDuration)
		c.streamCtx = dctx
		c.streamCancel = func(error) { dcancel() }
	}
	resp, err := breaker.Do(c.streamCtx, pol, c.attemptStream)
	c.traceBreaker(pol)
	if err == nil {
		return resp, nil
	}
	c.stopStream(err)
	return c.failed(resp, err)
}

// stopStream releases the call's stream-wide context.
func (c *call) stopStream(cause error) {
	if c.streamCancel != nil {
		c.streamCancel(cause)
	}
}

// attemptStream is one try of a streamed call: it returns once the first content
// chunk has arrived, with a body that replays what was read and streams the rest. Its
// request runs on a context of the call's (not the policy's per-attempt one), since the
// stream goes on after the policy returns.
func (c *call) attemptStream(context.Context) (*http.Response, error) {
	n := int(c.attempt.Add(1))
	actx, a := c.obs.StartAttempt(c.streamCtx, n)
	end := func(err error) { endAttempt(a, err) }
	sctx, cancel := context.WithCancelCause(actx)
	firstToken := &c.token
	if n > 1 {
		firstToken = new(cancelAt) // an earlier attempt's may still be firing
	}
	firstToken.schedule(&c.t.deadlines, time.Now().Add(c.route.Stream.FirstTokenTimeout), cancel, ErrFirstTokenTimeout)
	fail := func(err error) (*http.Response, error) {
		firstToken.expiry.Stop()
		switch cause := context.Cause(sctx); {
		case errors.Is(cause, ErrFirstTokenTimeout):
			err = firstTokenTimeout()
		case errors.Is(cause, ErrMaxStreamDuration):
			err = &attemptError{err: ErrMaxStreamDuration, verdict: breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassTimeout}}
		}
		cancel(err)
		end(err)
		return nil, err
	}

	resp, err := c.t.base.RoundTrip(c.attemptRequest(sctx))
	if err != nil {
		return fail(err)
	}
	env := c.meshSignals(resp, a)
	if resp.StatusCode < 200 || resp.StatusCode > 299 || !isEventStream(resp) {
		// An error status, or a server that answered a stream request with one JSON
		// document: judged like a non-streamed answer.
		firstToken.expiry.Stop()
		defer cancel(nil)
		resp, err := c.judgeWhole(resp, env)
		if resp == nil {
			return fail(err)
		}
		end(err)
		return resp, err
	}

	s := &streamBody{
		c: c, body: resp.Body, cancel: cancel, ctx: sctx, end: end,
		r:         c.t.getEventReader(resp.Body),
		hideUsage: !c.info.includeUsage,
		env:       env,
		record:    c.t.cfg.Cache != nil,
	}
	if err := s.prelude(); err != nil {
		s.body.Close()
		s.r.release()
		return fail(err)
	}
	if !firstToken.expiry.Stop() {
		// The first-token timeout fired while the first chunk was arriving.
		s.body.Close()
		s.r.release()
		return fail(ErrFirstTokenTimeout)
	}

	resp.Body = s
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	s.startIdle()
	return resp, nil
}

// guardFallbackStream gives a fallback's stream the same idle timeout and tracing as
// the primary's.
func (c *call) guardFallbackStream(resp *http.Response, ctx context.Context, cancel context.CancelCauseFunc) *http.Response {
	s := &streamBody{
		c: c, body: resp.Body, cancel: cancel, ctx: ctx, end: func(error) {},
		hideUsage:  false, // a fallback is sent the caller's own stream options
		r:          c.t.getEventReader(resp.Body),
		delivering: true,
	}
	resp.Body = s
	s.startIdle()
	return resp
}

// streamBody is the caller's view of a stream: the events read before the first
// content chunk, then the rest as it arrives, each gap bounded by the idle timeout.
// It is read by one goroutine at a time, as any response body.
type streamBody struct {
	c      *call
	body   io.ReadCloser
	r      *eventReader // nil once given back; guarded by mu then
	ctx    context.Context
	cancel context.CancelCauseFunc
	end    func(error) // ends the attempt's span
	env    transport.Envoy

	hideUsage  bool // usage was requested by infermesh, not by the caller
	delivering bool // content has reached (or is queued for) the caller
	sawDone    bool
	sawFinish  bool
	idle       deadline.Entry // armed under mu
	// lastEvent is when the latest event arrived, for the idle check, as an
	// offset from started: time.Since reads only the monotonic clock, half the
	// cost of time.Now on every event.
	started   time.Time
	lastEvent atomic.Int64

	pending []byte // bytes queued for the caller, in r's buffer or in prefix
	prefix  []byte // the events read before the first content chunk

	chunks int
	bytes  int64

	// With a cache configured, the stream's text is put together so that a stream
	// that ends well can be stored as the last good reply.
	record       bool
	text         []byte
	finishReason string
	usageIn      int64
	usageOut     int64

	mu       sync.Mutex
	err      error // sticky: what Read returns once the stream has finished
	finished bool
	reading  bool // a Read is using r
}

// eventReader is what reading a stream takes: the SSE scanner and the chunk parser,
// with their buffers. Each stream gives its own back for the next one when it ends,
// so that a client allocates none of them per stream.
type eventReader struct {
	sc     *sse.Scanner
	parser wire.Parser
	f      wire.Fields
}

var eventReaders sync.Pool // *eventReader

func (t *Transport) getEventReader(body io.Reader) *eventReader {
	r, _ := eventReaders.Get().(*eventReader)
	if r == nil {
		r = new(eventReader)
	}
	r.sc = sse.Get(body, sse.Options{MaxEventSize: t.cfg.MaxEventBytes, EmitEmpty: true})
	return r
}

// release gives r back. Neither r nor the bytes of its events may be used afterwards.
func (r *eventReader) release() {
	r.sc.Release()
	r.sc = nil
	r.parser.Reset()
	r.f = wire.Fields{}
	eventReaders.Put(r)
}

// prelude reads events up to and including the first content chunk (or the end of a
// stream that has none). An error event, a broken stream or a malformed chunk before
// that point is an attempt error the policy may retry.
func (s *streamBody) prelude() error {
	for s.r.sc.Next() {
		ev := s.r.sc.Event()
		if ev.Done() {
			s.sawDone = true
			s.prefix = append(s.prefix, ev.Raw...)
			break
		}
		keep, err := s.observe(ev)
		if err != nil {
			return err
		}
		if keep {
			s.prefix = append(s.prefix, ev.Raw...)
		}
		if s.delivering {
			break
		}
		if int64(len(s.prefix)) > s.c.t.cfg.MaxResponseBytes {
			return tooLarge(s.c.t.cfg.MaxResponseBytes)
		}
	}
	if !s.delivering && !s.sawDone {
		if err := s.r.sc.Err(); err != nil {
			if errors.Is(err, sse.ErrEventTooLarge) {
				return tooLarge(int64(s.c.t.cfg.MaxEventBytes))
			}
			return brokenBeforeContent(err)
		}
		if !s.sawFinish {
			return brokenBeforeContent(io.ErrUnexpectedEOF)
		}
	}
	s.delivering = true
	s.pending = s.prefix
	return nil
}

// observe records one event and reports whether the caller should see it. An error
// event becomes an *APIError.
func (s *streamBody) observe(ev *sse.Event) (keep bool, err error) {
	if !ev.HasData || len(ev.Data) == 0 || ev.Data[0] != '{' {
		return true, nil // keep-alives and events that are not JSON chunks pass through
	}
	f := &s.r.f
	if perr := s.r.parser.Parse(ev.Data, f); perr != nil {
		return false, malformed(perr)
	}
	if f.Error.Present {
		return false, s.c.eventError(f, s.env)
	}
	s.c.obs.ObserveChunk(f)
	if f.NumFinishReasons > 0 {
		s.sawFinish = true
	}
	if s.record {
		s.remember(f)
	}
	if f.Choices == 0 && f.UsageState == wire.UsagePresent {
		return !s.hideUsage, nil
	}
	if f.HasContent {
		s.delivering = true
		s.chunks++
	}
	return true, nil
}

// startIdle arms the idle timeout. Rather than moving a deadline on every event, each
// event records its time and the check, when due, re-arms from the latest one.
// remember keeps what the cache needs of a chunk.
func (s *streamBody) remember(f *wire.Fields) {
	if f.Content != nil && int64(len(s.text)+len(f.Content)) <= s.c.t.cfg.MaxResponseBytes {
		s.text = wire.AppendUnquoted(s.text, f.Content)
	}
	if f.NumFinishReasons > 0 {
		s.finishReason = wire.Unquote(f.FinishReasons[0])
	}
	if f.UsageState == wire.UsagePresent {
		s.usageIn, s.usageOut = f.Usage.InputTokens, f.Usage.OutputTokens
	}
}

func (s *streamBody) startIdle() {
	s.started = time.Now()
	s.lastEvent.Store(0)
	s.armIdle(s.started.Add(s.c.route.Stream.IdleTimeout))
}

func (s *streamBody) armIdle(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.finished || s.reading {
		s.c.t.deadlines.Schedule(&s.idle, at, s.checkIdle)
	}
}

func (s *streamBody) checkIdle() {
	idle := s.c.route.Stream.IdleTimeout
	due := s.started.Add(time.Duration(s.lastEvent.Load()) + idle)
	if time.Now().Before(due) {
		s.armIdle(due)
		return
	}
	s.cancel(ErrIdleTimeout)
}

// Read hands the caller the stream's bytes, event by event.
func (s *streamBody) Read(p []byte) (int, error) {
	s.mu.Lock()
	if err := s.err; err != nil {
		s.mu.Unlock()
		return 0, err
	}
	s.reading = true
	s.mu.Unlock()
	// A Close from another goroutine meanwhile ends the stream too: its body's next
	// read fails, and advance reports the end.
	for len(s.pending) == 0 && !s.advance() {
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	s.bytes += int64(n)
	s.mu.Lock()
	s.reading = false
	err := s.err
	r := s.takeReader()
	s.mu.Unlock()
	if r != nil {
		r.release()
	}
	if n > 0 {
		return n, nil
	}
	return 0, err
}

// takeReader takes the event reader to give back, once the stream has finished and
// no Read is using it. Called with mu held.
func (s *streamBody) takeReader() *eventReader {
	if !s.finished || s.reading {
		return nil
	}
	r := s.r
	s.r, s.pending = nil, nil
	return r
}

// advance reads the next event into pending, or ends the stream and reports that it
// did.
func (s *streamBody) advance() (ended bool) {
	if s.sawDone {
		s.finish(nil)
		return true
	}
	sc := s.r.sc
	if !sc.Next() {
		err := sc.Err()
		switch {
		case err != nil:
			s.finish(s.streamError(err))
		case !s.sawFinish:
			s.finish(s.streamError(io.ErrUnexpectedEOF))
		default:
			s.finish(nil) // a server that ends without [DONE] after finishing
		}
		return true
	}
	s.lastEvent.Store(int64(time.Since(s.started)))
	ev := sc.Event()
	if ev.Done() {
		s.sawDone = true
		s.pending = ev.Raw
		return false
	}
	keep, err := s.observe(ev)
	if err != nil {
		s.finish(&StreamError{Chunks: s.chunks, Bytes: s.bytes, Err: err})
		return true
	}
	if keep {
		s.pending = ev.Raw
	}
	return false
}

// streamError turns a read failure into the caller's typed error, naming the timer
// that cut the stream when one did.
func (s *streamBody) streamError(err error) error {
	cause := context.Cause(s.ctx)
	switch {
	case errors.Is(cause, ErrIdleTimeout), errors.Is(cause, ErrMaxStreamDuration):
		err = cause
	case s.c.ctx.Err() != nil:
		err = context.Cause(s.c.ctx)
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
	if err == nil {
		s.err = io.EOF
	} else {
		s.err = err
	}
	s.idle.Stop()
	s.mu.Unlock()
	s.body.Close()
	s.cancel(io.EOF)
	if s.record && err == nil && (s.sawDone || s.sawFinish) {
		s.c.t.cfg.Cache.StoreReply(s.c.fallbackRequest(nil), fallback.Reply{
			Content: string(s.text), FinishReason: s.finishReason,
			InputTokens: int(s.usageIn), OutputTokens: int(s.usageOut)})
	}
	s.end(err)
	s.c.stopStream(io.EOF)
	class := ""
	if err != nil {
		class = string(breaker.DefaultClassifier(err).Class)
	}
	s.c.obs.End(err, class)
}

// Close ends the stream early (or after its end): the connection is released, and
// the event reader too unless a Read on another goroutine is using it (that Read
// gives it back as it returns).
func (s *streamBody) Close() error {
	s.finish(nil)
	s.mu.Lock()
	r := s.takeReader()
	s.mu.Unlock()
	if r != nil {
		r.release()
	}
	return nil
}
