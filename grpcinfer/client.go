package grpcinfer

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/tracing"
)

// ClientConfig configures [DialOptions] and [ClientInterceptors]. The zero value gives the
// documented defaults: 64 MiB messages, no compression, the default keepalive, no service
// config, every call run through a circuit breaker with retries under a retry budget (the
// breaker package's defaults), and no time limits of the interceptors' own.
//
// Use one ClientConfig per upstream: each DialOptions or ClientInterceptors call builds one
// breaker from Policy, shared by every call made through its result, so dialling two
// targets with one result would let one target's failures open the other's breaker.
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
	// ServiceConfig is a gRPC service config in JSON, installed as the channel's default
	// (a service config from the name resolver takes precedence, as gRPC specifies). ""
	// (the default) installs none.
	//
	// The client interceptors are the one retry layer: unless NoPolicy is set, DialOptions
	// switches gRPC's own retries off (grpc.WithDisableRetry, which covers a resolver's
	// service config too) and rejects a ServiceConfig with a retryPolicy or hedgingPolicy,
	// which would repeat each of the Policy's attempts. gRPC's transparent retry of a
	// request that never reached the server application stays on.
	ServiceConfig string

	// Policy is the circuit breaker and the retries (with a retry budget) every call runs
	// through. The zero value means breaker.Config's documented defaults: 2 attempts in
	// all with 2 s full-jitter backoff, a 20% retry budget, and a breaker that opens for
	// 30 s when half of the last 20 calls (at least 5) failed. Calls are judged by the
	// verdicts of the [Error] type, so Classifier should be nil (breaker.DefaultClassifier)
	// or consult breaker.Verdicter first. Each DialOptions or ClientInterceptors call builds
	// one breaker.Policy from it; observe that breaker through Policy.Hooks.
	//
	// Policy.Timeout and Policy.PerTryTimeout must be zero: gRPC time limits are set per
	// method in [MethodPolicy] (Default, Methods, [WithCallPolicy]) and enforced as context
	// deadlines, which gRPC also sends to the server as grpc-timeout, and which keep each
	// attempt on the caller's goroutine. A non-zero value is an error naming the field.
	Policy breaker.Config
	// NoPolicy switches the breaker and the interceptors' retries off: every call is a
	// single attempt, and gRPC retries only as ServiceConfig says (by default, never).
	// Method time limits, the [Error] classification and tracing still apply. With
	// NoPolicy, Policy must be zero and no MethodPolicy in the config may set MaxAttempts
	// above 1 (a [WithCallPolicy] MaxAttempts has no effect). The default, false, keeps the
	// Policy on.
	NoPolicy bool
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

// validate checks p, found at where in the config; retries tells whether the Policy is on.
func (p MethodPolicy) validate(where string, retries bool) error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("grpcinfer: %s.MaxAttempts %d is negative", where, p.MaxAttempts)
	case p.MaxAttempts > 1 && !retries:
		return fmt.Errorf("grpcinfer: %s.MaxAttempts %d asks for retries, which ClientConfig.NoPolicy switches off", where, p.MaxAttempts)
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
// service config, the client interceptors of [ClientInterceptors] and, unless NoPolicy is
// set, gRPC's own retries switched off (see [ClientConfig].ServiceConfig). Add transport
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
	if err := checkServiceConfig(cfg.ServiceConfig, !cfg.NoPolicy); err != nil {
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
		grpc.WithChainUnaryInterceptor(unary),
		grpc.WithChainStreamInterceptor(stream),
	}
	if cfg.ServiceConfig != "" {
		opts = append(opts, grpc.WithDefaultServiceConfig(cfg.ServiceConfig))
	}
	if !cfg.NoPolicy {
		opts = append(opts, grpc.WithDisableRetry())
	}
	if kp, ok := ka.clientParams(); ok {
		opts = append(opts, grpc.WithKeepaliveParams(kp))
	}
	return opts, nil
}

// client holds what the client interceptors share.
type client struct {
	policy    *breaker.Policy // nil with NoPolicy
	methods   map[string]MethodPolicy
	def       MethodPolicy
	maxSend   int
	tracing   *tracing.Instrumenter
	operation string
	provider  string
	attrs     attrCache
}

// ClientInterceptors returns the client interceptors, unary and stream. Each call passes
// the method's time limits, then the breaker Policy (circuit breaker and retries, unless
// cfg.NoPolicy), then tracing per attempt, and every failure comes back as an *[Error].
// Chain them first (outermost) if you add interceptors of your own, so that a retry re-runs
// the inner ones. Each call of ClientInterceptors builds one breaker from cfg.Policy, shared
// by everything the returned interceptors serve: use them for one upstream. Used without
// [DialOptions], add grpc.WithDisableRetry() yourself (unless cfg.NoPolicy), so that gRPC
// does not retry inside each of the Policy's attempts.
//
// With the Policy on, a server stream (one request, a stream of responses) is opened on
// the caller's first RecvMsg, so that opening, the request and the first message can be
// retried together: until then SendMsg and CloseSend are recorded and Header returns nil
// metadata.
func ClientInterceptors(cfg ClientConfig) (grpc.UnaryClientInterceptor, grpc.StreamClientInterceptor, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return c.unary, c.stream, nil
}

// newClient validates cfg and builds what the interceptors share, the breaker included.
func newClient(cfg ClientConfig) (*client, error) {
	policy, err := newPolicy(cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.Default.validate("ClientConfig.Default", policy != nil); err != nil {
		return nil, err
	}
	for name, p := range cfg.Methods {
		if !strings.HasPrefix(name, "/") {
			return nil, fmt.Errorf("grpcinfer: ClientConfig.Methods key %q does not start with \"/\"", name)
		}
		if err := p.validate(fmt.Sprintf("ClientConfig.Methods[%q]", name), policy != nil); err != nil {
			return nil, err
		}
	}
	send, err := msgSize("ClientConfig.MaxSendMsgSize", cfg.MaxSendMsgSize)
	if err != nil {
		return nil, err
	}
	c := &client{policy: policy, methods: cfg.Methods, def: cfg.Default, maxSend: send,
		tracing: cfg.Tracing, operation: cfg.TraceOperation, provider: cfg.TraceProvider}
	if c.operation == "" {
		c.operation = DefaultTraceOperation
	}
	if c.provider == "" {
		c.provider = DefaultTraceProvider
	}
	return c, nil
}

// newPolicy builds the breaker of cfg.Policy; nil with NoPolicy.
func newPolicy(cfg ClientConfig) (*breaker.Policy, error) {
	if cfg.NoPolicy {
		if !reflect.ValueOf(cfg.Policy).IsZero() {
			return nil, errors.New("grpcinfer: ClientConfig.Policy is set, but ClientConfig.NoPolicy switches it off: leave one of them zero")
		}
		return nil, nil
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"Timeout", cfg.Policy.Timeout}, {"PerTryTimeout", cfg.Policy.PerTryTimeout}} {
		if f.d != 0 {
			return nil, fmt.Errorf("grpcinfer: ClientConfig.Policy.%s %v cannot be honoured: gRPC time limits are set per method, in MethodPolicy.%s of ClientConfig.Default or ClientConfig.Methods, and enforced as context deadlines; leave Policy.%[1]s zero", f.name, f.d, f.name)
		}
	}
	p, err := breaker.New(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("grpcinfer: ClientConfig.Policy: %w", err)
	}
	return p, nil
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
