package grpcinfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/tracing"
)

// Causes for cancelling a stream's context, told apart with context.Cause.
var (
	errAttemptEnded        = errors.New("grpcinfer: stream attempt abandoned")
	errFirstMessageTimeout = errors.New("grpcinfer: first-message timeout")
	errIdleTimeout         = errors.New("grpcinfer: idle timeout")
	errMaxStreamDuration   = errors.New("grpcinfer: max stream duration")
	errStreamDone          = errors.New("grpcinfer: stream finished")
)

func (c *client) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	mp := c.methodPolicy(method, opts)
	s := &clientStream{c: c, callerCtx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts, mp: mp}
	if desc.ServerStreams && !desc.ClientStreams && c.policy != nil {
		// Opened lazily on the first RecvMsg, so that opening, the request and the first
		// response message are retried together (and the span can name the request's model).
		return s, nil
	}
	if c.tracing != nil {
		if s.tr = c.startTrace(&s.callerCtx, method, cc, nil, true); s.tr != nil {
			s.callerCtx = injectOutgoing(s.callerCtx, c.tracing)
		}
	}
	if err := s.openEager(); err != nil {
		s.tr.end(err)
		return nil, err
	}
	return s, nil
}

// clientStream wraps the stream the caller sees. Its methods are called as grpc.ClientStream
// requires: SendMsg and CloseSend from one goroutine, RecvMsg from one goroutine.
type clientStream struct {
	c         *client
	callerCtx context.Context
	desc      *grpc.StreamDesc
	cc        *grpc.ClientConn
	method    string
	streamer  grpc.Streamer
	opts      []grpc.CallOption
	mp        MethodPolicy

	req      any  // the request recorded for a lazy stream
	hasReq   bool // SendMsg was called on the lazy stream
	closed   bool // CloseSend was called on the lazy stream
	openErr  error
	attempts int // attempts to open a lazy stream

	tr         *callTrace // nil without tracing
	trEnd      sync.Once
	cs         grpc.ClientStream // the open stream
	sctx       context.Context
	cancel     context.CancelCauseFunc
	timer      *time.Timer // first-message, then idle timer
	timerCause error
	maxEnd     time.Time // when MaxStreamDuration ends the current stream; zero without one
	received   int
	finished   bool
}

// newStreamCtx derives the context of one underlying stream from the caller's.
func (s *clientStream) newStreamCtx() (context.Context, context.CancelCauseFunc) {
	ctx := s.callerCtx
	if d := s.mp.MaxStreamDuration; d > 0 {
		// The timeout's own cancel runs through the cause-cancel below, when the stream
		// ends: the stream context is a child, so cancelling it alone would leave the parent's
		// timer, hence the AfterFunc.
		var cancel context.CancelFunc
		s.maxEnd = time.Now().Add(d)
		ctx, cancel = context.WithTimeoutCause(ctx, d, errMaxStreamDuration)
		cctx, ccancel := context.WithCancelCause(ctx)
		context.AfterFunc(cctx, cancel)
		return cctx, ccancel
	}
	return context.WithCancelCause(ctx)
}

// openEager opens a client or bidirectional stream (or any stream without a Policy): through
// the Policy when there is one, never retried once anything could have been sent.
func (s *clientStream) openEager() error {
	open := func(actx context.Context) (grpc.ClientStream, error) {
		sctx, cancel := s.newStreamCtx()
		stop := func() bool { return true }
		if actx != s.callerCtx {
			stop = context.AfterFunc(actx, func() { cancel(errAttemptEnded) })
		}
		cs, err := s.streamer(sctx, s.desc, s.cc, s.method, s.opts...)
		if err != nil {
			cancel(err)
			return nil, attemptError(err, attemptFacts{method: s.method, callerCtx: s.callerCtx})
		}
		if !stop() {
			cancel(errAttemptEnded)
			return nil, attemptError(status.FromContextError(actx.Err()).Err(), attemptFacts{method: s.method, callerCtx: s.callerCtx})
		}
		s.sctx, s.cancel = sctx, cancel
		return cs, nil
	}
	var cs grpc.ClientStream
	var err error
	if s.c.policy == nil {
		cs, err = open(s.callerCtx)
	} else {
		// Opening sends nothing the server acts on yet, so failures to open may be retried.
		cs, err = breaker.Do(s.c.overrides(s.callerCtx, s.mp), s.c.policy, open)
	}
	if err != nil {
		return s.c.finalError(s.callerCtx, s.method, err, 0)
	}
	s.cs = cs
	s.watchTrace()
	s.armTimer(s.mp.FirstMessageTimeout, errFirstMessageTimeout)
	return nil
}

// watchTrace ends the call span if the stream's context ends before the caller has read the
// stream to its end (the caller cancelled it, or abandoned it and cancelled its context).
func (s *clientStream) watchTrace() {
	if s.tr == nil {
		return
	}
	sctx := s.sctx
	context.AfterFunc(sctx, func() {
		switch cause := context.Cause(sctx); cause {
		case errStreamDone:
		case errFirstMessageTimeout, errIdleTimeout, errMaxStreamDuration:
			s.endTrace(&Error{Method: s.method, Code: codes.DeadlineExceeded, status: status.New(codes.DeadlineExceeded, cause.Error()),
				Verdict: breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassTimeout}})
		default:
			s.endTrace(status.FromContextError(sctx.Err()).Err())
		}
	})
}

// endTrace ends the call span once.
func (s *clientStream) endTrace(err error) {
	if s.tr == nil {
		return
	}
	s.trEnd.Do(func() {
		if err == nil && s.cs != nil {
			s.tr.success(nil, s.cs.Trailer())
		}
		s.tr.end(err)
	})
}

// armTimer (re)starts the stream's watchdog with cause; d <= 0 stops it.
func (s *clientStream) armTimer(d time.Duration, cause error) {
	if s.timer != nil && (d <= 0 || cause != s.timerCause) {
		s.timer.Stop()
		s.timer = nil
	}
	if d <= 0 {
		return
	}
	if s.timer != nil {
		s.timer.Reset(d) // the same watchdog again: the idle timer after each message
		return
	}
	cancel := s.cancel
	s.timer, s.timerCause = time.AfterFunc(d, func() { cancel(cause) }), cause
}

// openLazy opens a server stream through the Policy. Opening it, replaying the request and
// receiving the first message are one attempt ([clientStream.tryOpen]), retried as the
// Policy allows; the stream the winning attempt opened becomes the caller's.
func (s *clientStream) openLazy(m any) error {
	if s.c.tracing != nil {
		s.tr = s.c.startTrace(&s.callerCtx, s.method, s.cc, s.req, true)
	}
	o, err := breaker.Do(s.c.overrides(s.callerCtx, s.mp), s.c.policy, func(actx context.Context) (openStream, error) {
		return s.tryOpen(actx, m)
	})
	if err != nil {
		err = s.c.finalError(s.callerCtx, s.method, err, 0)
		s.endTrace(err)
		return err
	}
	return s.adopt(o)
}

// openStream is an underlying stream with its context.
type openStream struct {
	cs     grpc.ClientStream // nil until the streamer opened it
	sctx   context.Context
	cancel context.CancelCauseFunc
	eof    bool // the stream ended without error before any message
}

// lazyAttempt is one attempt of openLazy.
type lazyAttempt struct {
	s    *clientStream
	actx context.Context // the attempt's context: the Policy's, bounded by FirstMessageTimeout
	// open is the attempt's stream. Its context derives from the caller's, since a stream
	// that succeeds outlives the attempt; until detach, the attempt's end cancels it.
	open   openStream
	detach func() bool // false when the attempt's end has already cancelled the stream
	span   *tracing.Attempt
}

// tryOpen is one attempt: open a stream, replay what the caller sent, receive the first
// message into m. The Policy's time limiter is off, so the attempt runs on the caller's
// goroutine and may receive straight into m.
func (s *clientStream) tryOpen(actx context.Context, m any) (openStream, error) {
	s.attempts++
	if d := s.mp.FirstMessageTimeout; d > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(actx, d)
		defer cancel()
	}
	a := s.startAttempt(actx)
	if err := a.exchange(m); err != nil {
		return openStream{}, a.fail(err)
	}
	if !a.detach() {
		// The attempt's time ran out (or the caller cancelled) as the first message came in.
		return openStream{}, a.fail(status.FromContextError(actx.Err()).Err())
	}
	if s.tr != nil {
		header, _ := a.open.cs.Header()
		s.tr.endAttempt(a.span, nil, header, nil)
	}
	return a.open, nil
}

// startAttempt prepares an attempt's stream context and its span.
func (s *clientStream) startAttempt(actx context.Context) *lazyAttempt {
	tctx, span := s.tr.startAttempt(actx)
	sctx, cancel := s.newStreamCtx()
	if s.tr != nil {
		// The attempt's trace context travels in the stream's metadata.
		md, _ := metadata.FromOutgoingContext(tctx)
		sctx = metadata.NewOutgoingContext(sctx, md)
	}
	return &lazyAttempt{s: s, actx: actx, span: span, open: openStream{sctx: sctx, cancel: cancel},
		detach: context.AfterFunc(actx, func() { cancel(errAttemptEnded) })}
}

// exchange opens the stream, replays the recorded request and CloseSend, and receives the
// first message into m; a stream that ends without one sets eof.
func (a *lazyAttempt) exchange(m any) error {
	s := a.s
	cs, err := s.streamer(a.open.sctx, s.desc, s.cc, s.method, s.opts...)
	if err != nil {
		return err
	}
	a.open.cs = cs
	if s.hasReq {
		if err := cs.SendMsg(s.req); err != nil {
			// The send error is io.EOF when the stream already ended; its status is what
			// RecvMsg returns.
			if rerr := cs.RecvMsg(m); rerr != nil {
				err = rerr
			}
			return err
		}
	}
	if s.closed {
		if err := cs.CloseSend(); err != nil {
			return err
		}
	}
	if err := cs.RecvMsg(m); err != io.EOF {
		return err
	}
	a.open.eof = true
	return nil
}

// fail ends a failed attempt: it cancels the attempt's stream and returns the attempt's
// *Error, naming the first-message timeout when that is what ended it.
func (a *lazyAttempt) fail(err error) error {
	s := a.s
	f := attemptFacts{method: s.method, req: s.req, maxSend: s.c.maxSend, callerCtx: s.callerCtx}
	if cs := a.open.cs; cs != nil {
		f.header, _ = cs.Header()
		f.trailer = cs.Trailer()
	}
	a.detach()
	if context.Cause(a.open.sctx) == errAttemptEnded && errors.Is(a.actx.Err(), context.DeadlineExceeded) && s.callerCtx.Err() == nil {
		err = status.Error(codes.DeadlineExceeded, timeoutText(errFirstMessageTimeout, s.mp, 0))
	}
	a.open.cancel(err)
	e := attemptError(err, f)
	s.tr.endAttempt(a.span, e, f.header, f.trailer)
	return e
}

// adopt makes the stream of the winning attempt the caller's and delivers what it received.
func (s *clientStream) adopt(o openStream) error {
	s.cs, s.sctx, s.cancel = o.cs, o.sctx, o.cancel
	s.watchTrace()
	if o.eof {
		s.finish()
		s.endTrace(nil)
		return io.EOF
	}
	if s.tr != nil {
		s.tr.call.FirstChunk(time.Now())
	}
	s.received = 1
	s.armTimer(s.mp.IdleTimeout, errIdleTimeout)
	return nil
}

func (s *clientStream) finish() {
	if s.finished {
		return
	}
	s.finished = true
	s.armTimer(0, nil)
	if s.cancel != nil {
		s.cancel(errStreamDone)
	}
}

func (s *clientStream) Header() (metadata.MD, error) {
	if s.cs == nil {
		return nil, nil // a lazy stream not yet opened: nothing has been received
	}
	return s.cs.Header()
}

func (s *clientStream) Trailer() metadata.MD {
	if s.cs == nil {
		return nil
	}
	return s.cs.Trailer()
}

func (s *clientStream) CloseSend() error {
	if s.cs == nil {
		s.closed = true
		return nil
	}
	return s.cs.CloseSend()
}

func (s *clientStream) Context() context.Context {
	if s.sctx != nil {
		return s.sctx
	}
	return s.callerCtx
}

func (s *clientStream) SendMsg(m any) error {
	if s.cs == nil {
		if s.hasReq {
			return status.Errorf(codes.Internal, "grpcinfer: %s: a server-streaming call takes exactly one request message", s.method)
		}
		s.req, s.hasReq = m, true
		return nil
	}
	return s.cs.SendMsg(m)
}

func (s *clientStream) RecvMsg(m any) error {
	if s.cs == nil {
		if s.openErr != nil {
			return s.openErr
		}
		if err := s.openLazy(m); err != nil {
			s.openErr = err
			return err
		}
		return nil
	}
	if s.finished && s.openErr != nil {
		return s.openErr
	}
	err := s.cs.RecvMsg(m)
	if err == nil {
		if s.received == 0 && s.tr != nil {
			s.tr.call.FirstChunk(time.Now())
		}
		s.received++
		s.armTimer(s.mp.IdleTimeout, errIdleTimeout)
		return nil
	}
	if err == io.EOF { // grpc-go returns io.EOF itself, unwrapped, for a stream that ended OK
		s.endTrace(nil)
		s.finish()
		return err
	}
	f := attemptFacts{method: s.method, received: s.received, callerCtx: s.callerCtx, trailer: s.cs.Trailer()}
	f.header, _ = s.cs.Header()
	cause := s.endCause(err)
	s.finish()
	e := attemptError(err, f)
	switch cause {
	case errFirstMessageTimeout, errIdleTimeout, errMaxStreamDuration:
		e.Code = codes.DeadlineExceeded
		e.status = status.New(codes.DeadlineExceeded, timeoutText(cause, s.mp, s.received))
		e.Verdict = breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassTimeout, Retryable: s.received == 0}
	}
	e.Attempts = max(s.attempts, 1)
	s.openErr = e
	s.endTrace(e)
	return e
}

// endCause is why the stream's context ended, if it did, given the stream's error. A
// stream cut at its max duration can fail before its context says so: grpc-go judges a
// reset that arrives after the deadline as DEADLINE_EXCEEDED by the clock, while the timer
// that cancels the context may not have run yet on a loaded machine. The max duration is
// the cause of such an error then, unless the caller's own deadline came first.
func (s *clientStream) endCause(err error) error {
	cause := context.Cause(s.sctx)
	if cause != nil || s.maxEnd.IsZero() || time.Now().Before(s.maxEnd) || status.Code(err) != codes.DeadlineExceeded {
		return cause
	}
	if d, ok := s.callerCtx.Deadline(); ok && !d.After(s.maxEnd) {
		return nil
	}
	return errMaxStreamDuration
}

func timeoutText(cause error, mp MethodPolicy, received int) string {
	switch cause {
	case errFirstMessageTimeout:
		return fmt.Sprintf("grpcinfer: no response message within the first-message timeout %v", mp.FirstMessageTimeout)
	case errIdleTimeout:
		return fmt.Sprintf("grpcinfer: no response message for the idle timeout %v after %d messages", mp.IdleTimeout, received)
	}
	return fmt.Sprintf("grpcinfer: stream exceeded its max duration %v after %d messages", mp.MaxStreamDuration, received)
}
