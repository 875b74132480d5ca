package grpcinfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/tracing"
)

// ClientConfig configures [DialOptions] and [ClientInterceptors]. The zero value gives the
// documented defaults: 64 MiB messages, no compression, the default keepalive, the default
// service config, no breaker and no time limits of the interceptors' own.
type ClientConfig struct {
	// MaxRecvMsgSize and MaxSendMsgSize limit message sizes in bytes (receive: after
	// decompression). 0 means DefaultMaxMsgSize (64 MiB).
	MaxRecvMsgSize, MaxSendMsgSize int
	// Compressor compresses every request: "zstd" ([Zstd]), "gzip" ([Gzip]) or any other
	// registered gRPC compressor. Servers answer in the same compressor. "" (the default)
	// or "identity" sends uncompressed, the right choice for float tensors, which compress
	// poorly.
	Compressor string
	// Keepalive is the keepalive policy; give servers the same value.
	Keepalive Keepalive
	// ServiceConfig is the gRPC service config JSON. "" means [DefaultServiceConfig]
	// (gRPC-level retry of UNAVAILABLE with retryThrottling); "{}" means none.
	ServiceConfig string

	// Policy runs every call through a breaker.Policy: circuit breaker and retries with a
	// budget, judged by the verdicts of the [Error] type (the Policy's Classifier should be
	// nil, that is breaker.DefaultClassifier, or consult breaker.Verdicter first). nil means
	// no breaker and no retries by the interceptors (gRPC's own service-config retries still
	// apply). One Policy should guard one upstream: use one per target.
	//
	// The Policy's Timeout and PerTryTimeout are not used. gRPC enforces deadlines itself,
	// so the interceptors apply the [MethodPolicy] limits as context deadlines (which also
	// reach the server as grpc-timeout) and run the Policy with its time limiter off; that
	// keeps each call on the caller's goroutine, where the time limiter's hand-off to another
	// goroutine would cost about a third of a loopback call.
	Policy *breaker.Policy
	// Methods holds per-method policies, keyed by full method name ("/pkg.Service/Method")
	// or by service prefix ("/pkg.Service/"); the exact name wins. nil means none.
	Methods map[string]MethodPolicy
	// Default is the policy of methods that Methods does not list. Its zero value sets no
	// time limit (the caller's context deadline governs) and keeps the Policy's MaxAttempts.
	Default MethodPolicy

	// Tracing records one span per call (kind CLIENT, "{operation} {model}", the model taken
	// from the request's model_name when it has one) with a child span per attempt, retries,
	// breaker state, Envoy's mesh facts, and the token usage a server of this package sent
	// in its trailers; the trace context travels in the request metadata. nil means no
	// tracing.
	Tracing *tracing.Instrumenter
	// TraceOperation and TraceProvider are gen_ai.operation.name and gen_ai.provider.name
	// of the spans. "" means DefaultTraceOperation ("infer") and DefaultTraceProvider
	// ("oip", the Open Inference Protocol).
	TraceOperation, TraceProvider string
}

// MethodPolicy sets the time limits and attempts of one method. Zero fields keep the value
// from the level below (per call: [WithCallPolicy] over Methods over Default); a zero
// after all levels means no limit of the interceptors' own (the caller's context deadline
// still applies) and, for MaxAttempts, the breaker Policy's value. breaker.NoTimeout at a
// higher level switches off a limit a lower level set.
//
// Unary calls use Timeout, PerTryTimeout and MaxAttempts. Streams never get a total timeout
// unless MaxStreamDuration asks for one: a long generation is not a slow call. A stream that
// only the server streams (one request, many responses) is retried, within the breaker
// Policy, until its first message arrives, each attempt bounded by FirstMessageTimeout; once
// a message has reached the caller it is never retried, and IdleTimeout bounds the gap
// between messages. Client and bidirectional streams are opened through the Policy (its
// circuit breaker can refuse them, and a failure to open is retried since nothing was sent)
// but never retried once open, since their sent messages cannot be replayed.
type MethodPolicy struct {
	// Timeout bounds a unary call, retries included.
	Timeout time.Duration
	// PerTryTimeout bounds each attempt of a unary call.
	PerTryTimeout time.Duration
	// MaxAttempts caps the attempts of a call (1 turns retries off).
	MaxAttempts int
	// FirstMessageTimeout bounds the wait for a stream's first response message.
	FirstMessageTimeout time.Duration
	// IdleTimeout bounds the wait for each later response message of a stream.
	IdleTimeout time.Duration
	// MaxStreamDuration bounds a stream as a whole, as a deadline the server sees too.
	MaxStreamDuration time.Duration
}

// over returns p with the non-zero fields of o on top.
func (p MethodPolicy) over(o MethodPolicy) MethodPolicy {
	if o.Timeout != 0 {
		p.Timeout = o.Timeout
	}
	if o.PerTryTimeout != 0 {
		p.PerTryTimeout = o.PerTryTimeout
	}
	if o.MaxAttempts != 0 {
		p.MaxAttempts = o.MaxAttempts
	}
	if o.FirstMessageTimeout != 0 {
		p.FirstMessageTimeout = o.FirstMessageTimeout
	}
	if o.IdleTimeout != 0 {
		p.IdleTimeout = o.IdleTimeout
	}
	if o.MaxStreamDuration != 0 {
		p.MaxStreamDuration = o.MaxStreamDuration
	}
	return p
}

func (p MethodPolicy) validate(where string) error {
	if p.MaxAttempts < 0 {
		return fmt.Errorf("grpcinfer: %s.MaxAttempts %d is negative", where, p.MaxAttempts)
	}
	for name, d := range map[string]time.Duration{"Timeout": p.Timeout, "PerTryTimeout": p.PerTryTimeout,
		"FirstMessageTimeout": p.FirstMessageTimeout, "IdleTimeout": p.IdleTimeout, "MaxStreamDuration": p.MaxStreamDuration} {
		if d < 0 && d != breaker.NoTimeout {
			return fmt.Errorf("grpcinfer: %s.%s %v is negative (use breaker.NoTimeout to switch it off)", where, name, d)
		}
	}
	return nil
}

type callPolicyOption struct {
	grpc.EmptyCallOption
	p MethodPolicy
}

// WithCallPolicy returns a CallOption that changes the [MethodPolicy] of one call: its
// non-zero fields override the configured ones. It has an effect only on a connection that
// uses [ClientInterceptors] (as [DialOptions] does); elsewhere gRPC ignores it.
func WithCallPolicy(p MethodPolicy) grpc.CallOption { return callPolicyOption{p: p} }

// DialOptions returns the client preset: keepalive, message limits, the compressor, the
// service config and the client interceptors of [ClientInterceptors]. Add transport
// credentials (grpc.WithTransportCredentials) yourself. It returns an error naming the first
// invalid field of cfg.
func DialOptions(cfg ClientConfig) ([]grpc.DialOption, error) {
	ka, err := cfg.Keepalive.withDefaults()
	if err != nil {
		return nil, err
	}
	recv, err := msgSize("ClientConfig.MaxRecvMsgSize", cfg.MaxRecvMsgSize)
	if err != nil {
		return nil, err
	}
	send, err := msgSize("ClientConfig.MaxSendMsgSize", cfg.MaxSendMsgSize)
	if err != nil {
		return nil, err
	}
	if err := checkCompressor(cfg.Compressor); err != nil {
		return nil, err
	}
	sc := cfg.ServiceConfig
	if sc == "" {
		sc = DefaultServiceConfig
	}
	if err := checkServiceConfig(sc); err != nil {
		return nil, err
	}
	unary, stream, err := ClientInterceptors(cfg)
	if err != nil {
		return nil, err
	}
	callOpts := []grpc.CallOption{grpc.MaxCallRecvMsgSize(recv), grpc.MaxCallSendMsgSize(send)}
	if cfg.Compressor != "" && cfg.Compressor != "identity" {
		callOpts = append(callOpts, grpc.UseCompressor(cfg.Compressor))
	}
	opts := []grpc.DialOption{
		grpc.WithDefaultCallOptions(callOpts...),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithChainUnaryInterceptor(unary),
		grpc.WithChainStreamInterceptor(stream),
	}
	if kp, ok := ka.clientParams(); ok {
		opts = append(opts, grpc.WithKeepaliveParams(kp))
	}
	return opts, nil
}

// client holds what the client interceptors share.
type client struct {
	policy    *breaker.Policy
	methods   map[string]MethodPolicy
	def       MethodPolicy
	maxSend   int
	tracing   *tracing.Instrumenter
	operation string
	provider  string
	attrs     attrCache
}

// ClientInterceptors returns the client interceptors, unary and stream. Each call passes
// the method's time limits, then the breaker Policy (circuit breaker and retries, when
// cfg.Policy is set), then tracing per attempt, and every failure comes back as an *[Error].
// Chain them first (outermost) if you add interceptors of your own, so that a retry re-runs
// the inner ones.
//
// With a Policy, a server stream (one request, a stream of responses) is opened on the
// caller's first RecvMsg, so that opening, the request and the first message can be retried
// together: until then SendMsg and CloseSend are recorded and Header returns nil metadata.
func ClientInterceptors(cfg ClientConfig) (grpc.UnaryClientInterceptor, grpc.StreamClientInterceptor, error) {
	if err := cfg.Default.validate("ClientConfig.Default"); err != nil {
		return nil, nil, err
	}
	for name, p := range cfg.Methods {
		if !strings.HasPrefix(name, "/") {
			return nil, nil, fmt.Errorf("grpcinfer: ClientConfig.Methods key %q does not start with \"/\"", name)
		}
		if err := p.validate(fmt.Sprintf("ClientConfig.Methods[%q]", name)); err != nil {
			return nil, nil, err
		}
	}
	send, err := msgSize("ClientConfig.MaxSendMsgSize", cfg.MaxSendMsgSize)
	if err != nil {
		return nil, nil, err
	}
	c := &client{policy: cfg.Policy, methods: cfg.Methods, def: cfg.Default, maxSend: send,
		tracing: cfg.Tracing, operation: cfg.TraceOperation, provider: cfg.TraceProvider}
	if c.operation == "" {
		c.operation = DefaultTraceOperation
	}
	if c.provider == "" {
		c.provider = DefaultTraceProvider
	}
	return c.unary, c.stream, nil
}

func (c *client) methodPolicy(method string, opts []grpc.CallOption) MethodPolicy {
	p := c.def
	if len(c.methods) > 0 {
		if mp, ok := c.methods[method]; ok {
			p = p.over(mp)
		} else if i := strings.LastIndexByte(method, '/'); i > 0 {
			if mp, ok := c.methods[method[:i+1]]; ok {
				p = p.over(mp)
			}
		}
	}
	for _, o := range opts {
		if cp, ok := o.(callPolicyOption); ok {
			p = p.over(cp.p)
		}
	}
	return p
}

func (c *client) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) (err error) {
	mp := c.methodPolicy(method, opts)
	var tr *callTrace
	if c.tracing != nil {
		tr = c.startTrace(&ctx, method, cc, req, false)
		if tr != nil {
			defer func() { tr.end(err) }()
		}
	}
	attempt := func(actx context.Context, out any) error {
		actx, att := tr.startAttempt(actx)
		var header, trailer metadata.MD
		callOpts := append(opts[:len(opts):len(opts)], grpc.Header(&header), grpc.Trailer(&trailer))
		err := invoker(actx, method, req, out, cc, callOpts...)
		if err != nil {
			err = attemptError(err, attemptFacts{method: method, header: header, trailer: trailer, req: req, maxSend: c.maxSend, callerCtx: ctx})
		} else {
			tr.success(out, trailer)
		}
		tr.endAttempt(att, err, header, trailer)
		return err
	}

	if mp.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, mp.Timeout)
		defer cancel()
	}
	if c.policy == nil {
		if err := attempt(ctx, reply); err != nil {
			return c.finalError(ctx, method, err, 0)
		}
		return nil
	}
	// The Policy's own time limiter is off (see ClientConfig.Policy): fn runs on this
	// goroutine, so every attempt may unmarshal straight into reply.
	_, err = breaker.Do(c.overrides(ctx, mp), c.policy, func(actx context.Context) (struct{}, error) {
		if mp.PerTryTimeout > 0 {
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeout(actx, mp.PerTryTimeout)
			defer cancel()
		}
		return struct{}{}, attempt(actx, reply)
	})
	if err != nil {
		return c.finalError(ctx, method, err, 0)
	}
	return nil
}

// overrides switches the Policy's time limiter off for a call (gRPC enforces deadlines
// itself) and applies the method's MaxAttempts.
func (c *client) overrides(ctx context.Context, mp MethodPolicy) context.Context {
	return breaker.WithOverrides(ctx, breaker.Overrides{Timeout: breaker.NoTimeout, PerTryTimeout: breaker.NoTimeout, MaxAttempts: mp.MaxAttempts})
}

// startTrace starts the call span (replacing *ctx with the span's context) when tracing
// records anything; it returns nil otherwise.
func (c *client) startTrace(ctx *context.Context, method string, cc *grpc.ClientConn, req any, stream bool) *callTrace {
	hp := c.attrs.target(cc.Target())
	cctx, call := c.tracing.Start(*ctx, tracing.Request{
		Operation: c.operation, Provider: c.provider, Model: modelOf(req), Stream: stream,
		ServerAddress: hp.host, ServerPort: hp.port, RequestID: idOf(req), Attributes: c.attrs.rpcAttrs(method),
	})
	if call == nil {
		return nil
	}
	if c.policy != nil {
		call.Breaker(c.policy.State().String())
	}
	*ctx = cctx
	return &callTrace{in: c.tracing, call: call}
}

// finalError turns what a call ended with into the *Error the caller gets.
func (c *client) finalError(ctx context.Context, method string, err error, received int) error {
	var be *breaker.Error
	if !errors.As(err, &be) {
		// No policy: the attempt's own error.
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		return attemptError(err, attemptFacts{method: method, callerCtx: ctx, received: received})
	}
	out := &Error{Method: method, Attempts: be.Attempts, Received: received, cause: be, Verdict: be.Verdict, RetryAfter: be.RetryAfter}
	var last *Error
	if errors.As(be.Last, &last) {
		out.TrailersOnly, out.Envoy = last.TrailersOnly, last.Envoy
		out.Received = max(out.Received, last.Received)
	}
	switch {
	case errors.Is(be.Reason, context.Canceled):
		out.Code = codes.Canceled // the caller gave up, possibly while waiting to retry
	case be.Reason == context.DeadlineExceeded:
		out.Code = codes.DeadlineExceeded // the caller's deadline (or the method Timeout)
	case last != nil:
		out.Code, out.status = last.Code, last.status
	case errors.Is(be, breaker.ErrOpen):
		out.Code = codes.Unavailable
		out.Verdict = breaker.Verdict{Outcome: breaker.OutcomeFailure, Class: breaker.ClassUnavailable}
	default: // a time limit of the breaker's own
		out.Code = codes.DeadlineExceeded
	}
	return out
}

// Stream interceptor.

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

// openLazy opens a server stream through the Policy: stream, request and first message are
// one attempt, retried as the Policy allows.
func (s *clientStream) openLazy(m any) error {
	type opened struct {
		cs     grpc.ClientStream
		sctx   context.Context
		cancel context.CancelCauseFunc
		eof    bool
	}
	if s.c.tracing != nil {
		s.tr = s.c.startTrace(&s.callerCtx, s.method, s.cc, s.req, true)
	}
	// The Policy's time limiter is off, so each attempt runs on this goroutine and may
	// receive straight into m; FirstMessageTimeout bounds each attempt instead.
	o, err := breaker.Do(s.c.overrides(s.callerCtx, s.mp), s.c.policy, func(actx context.Context) (opened, error) {
		s.attempts++
		if d := s.mp.FirstMessageTimeout; d > 0 {
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeout(actx, d)
			defer cancel()
		}
		tctx, att := s.tr.startAttempt(actx)
		sctx, cancel := s.newStreamCtx()
		if s.tr != nil {
			// The stream outlives the attempt, so it derives from the caller's context; the
			// attempt's trace context goes along in the metadata.
			md, _ := metadata.FromOutgoingContext(tctx)
			sctx = metadata.NewOutgoingContext(sctx, md)
		}
		stop := context.AfterFunc(actx, func() { cancel(errAttemptEnded) })
		fail := func(err error, cs grpc.ClientStream) (opened, error) {
			f := attemptFacts{method: s.method, req: s.req, maxSend: s.c.maxSend, callerCtx: s.callerCtx}
			if cs != nil {
				f.header, _ = cs.Header()
				f.trailer = cs.Trailer()
			}
			stop()
			if context.Cause(sctx) == errAttemptEnded && errors.Is(actx.Err(), context.DeadlineExceeded) && s.callerCtx.Err() == nil {
				// The per-try time limit (FirstMessageTimeout) ended the attempt.
				err = status.Error(codes.DeadlineExceeded, timeoutText(errFirstMessageTimeout, s.mp, 0))
			}
			cancel(err)
			e := attemptError(err, f)
			s.tr.endAttempt(att, e, f.header, f.trailer)
			return opened{}, e
		}
		cs, err := s.streamer(sctx, s.desc, s.cc, s.method, s.opts...)
		if err != nil {
			return fail(err, nil)
		}
		if s.hasReq {
			if err := cs.SendMsg(s.req); err != nil {
				// The send error is io.EOF when the stream already ended; its status is
				// what RecvMsg returns.
				if rerr := cs.RecvMsg(m); rerr != nil {
					err = rerr
				}
				return fail(err, cs)
			}
		}
		if s.closed {
			if err := cs.CloseSend(); err != nil {
				return fail(err, cs)
			}
		}
		rerr := cs.RecvMsg(m)
		if rerr != nil && rerr != io.EOF {
			return fail(rerr, cs)
		}
		if !stop() {
			return fail(status.FromContextError(actx.Err()).Err(), cs)
		}
		if s.tr != nil {
			header, _ := cs.Header()
			s.tr.endAttempt(att, nil, header, nil)
		}
		return opened{cs: cs, sctx: sctx, cancel: cancel, eof: rerr != nil}, nil
	})
	if err != nil {
		err = s.c.finalError(s.callerCtx, s.method, err, 0)
		s.endTrace(err)
		return err
	}
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
	cause := context.Cause(s.sctx)
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

func timeoutText(cause error, mp MethodPolicy, received int) string {
	switch cause {
	case errFirstMessageTimeout:
		return fmt.Sprintf("grpcinfer: no response message within the first-message timeout %v", mp.FirstMessageTimeout)
	case errIdleTimeout:
		return fmt.Sprintf("grpcinfer: no response message for the idle timeout %v after %d messages", mp.IdleTimeout, received)
	}
	return fmt.Sprintf("grpcinfer: stream exceeded its max duration %v after %d messages", mp.MaxStreamDuration, received)
}
