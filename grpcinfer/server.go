package grpcinfer

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/tracing"
)

// ServerConfig configures [ServerOptions] and [ServerInterceptors]. The zero value gives the
// documented defaults: 64 MiB messages, the default keepalive, no concurrency limit, no
// minimum deadline, silent panic recovery and usage trailers.
type ServerConfig struct {
	// MaxRecvMsgSize and MaxSendMsgSize limit message sizes in bytes, after decompression.
	// 0 means DefaultMaxMsgSize (64 MiB).
	MaxRecvMsgSize, MaxSendMsgSize int
	// Keepalive is the keepalive policy; give clients the same value.
	Keepalive Keepalive

	// MaxConcurrentCalls is the load-shedding limit: at most this many calls (unary and
	// streaming together, across all connections) run at once, and any call beyond it is
	// refused with RESOURCE_EXHAUSTED before its handler runs, so an overloaded server
	// answers fast instead of queueing. 0 means no limit. Methods in ExemptMethods are
	// neither limited nor counted.
	MaxConcurrentCalls int
	// ExemptMethods lists full method names ("/pkg.Service/Method") or service prefixes
	// ending in "/" ("/grpc.health.v1.Health/") that load shedding and the minimum deadline
	// leave alone. nil means the health and server reflection services; an empty non-nil
	// slice exempts nothing.
	ExemptMethods []string
	// ShedRetryAfter, when positive, is sent with each shed call as the
	// grpc-retry-pushback-ms trailer: gRPC's own retries and this package's client
	// interceptor wait at least that long before trying again. 0 sends no hint.
	ShedRetryAfter time.Duration

	// MinRemainingDeadline refuses at once, with DEADLINE_EXCEEDED and before the handler
	// runs, a call whose deadline leaves less than this: it could not finish in time anyway.
	// Calls without a deadline are accepted. 0 turns the check off.
	MinRemainingDeadline time.Duration

	// Logger receives one error record per recovered panic, with the method and the stack.
	// nil means silent: the panic still becomes INTERNAL for the client.
	Logger *slog.Logger

	// DisableLegacyLLMTags leaves out the llm.input_tokens, llm.output_tokens and
	// llm.total_tokens span attributes that [ReportUsage] sets next to the OpenTelemetry
	// gen_ai.usage.* ones. false (the default) sets both.
	DisableLegacyLLMTags bool

	// Tracing records one span per call (kind SERVER, joining the caller's trace from the
	// request metadata, "{operation} {model}" with the model taken from the request's
	// model_name when it has one) and the server GenAI metrics; usage reported with
	// [ReportUsage] goes on it. nil means no span of this package's own: usage then goes on
	// whatever span the call's context carries (from a stats handler, say).
	Tracing *tracing.Instrumenter
	// TraceOperation and TraceProvider are gen_ai.operation.name and gen_ai.provider.name
	// of the spans. "" means DefaultTraceOperation ("infer") and DefaultTraceProvider ("oip").
	TraceOperation, TraceProvider string

	// DisableReflection leaves gRPC server reflection out of [NewServer]. false (the default)
	// registers it (grpc.reflection.v1 and v1alpha), so that grpcurl and other tools can list
	// and describe the services without their .proto files. It tells what the server
	// serves, not more: turn it off where the API itself is not to be disclosed.
	DisableReflection bool
}

// defaultExempt returns the services exempt from load shedding and the minimum deadline by
// default: health and server reflection, which must answer when the server is at its limit.
func defaultExempt() []string {
	return []string{
		"/grpc.health.v1.Health/",
		"/grpc.reflection.v1.ServerReflection/",
		"/grpc.reflection.v1alpha.ServerReflection/",
	}
}

func (c ServerConfig) validate() error {
	switch {
	case c.MaxConcurrentCalls < 0:
		return fmt.Errorf("grpcinfer: ServerConfig.MaxConcurrentCalls %d is negative", c.MaxConcurrentCalls)
	case c.ShedRetryAfter < 0:
		return fmt.Errorf("grpcinfer: ServerConfig.ShedRetryAfter %v is negative", c.ShedRetryAfter)
	case c.MinRemainingDeadline < 0:
		return fmt.Errorf("grpcinfer: ServerConfig.MinRemainingDeadline %v is negative", c.MinRemainingDeadline)
	}
	for i, m := range c.ExemptMethods {
		if !strings.HasPrefix(m, "/") {
			return fmt.Errorf("grpcinfer: ServerConfig.ExemptMethods[%d] %q does not start with \"/\"", i, m)
		}
	}
	return nil
}

// serverInterceptors holds the state the unary and stream interceptors share.
type serverInterceptors struct {
	cfg       ServerConfig
	operation string
	provider  string
	exempt    []string
	inflight  atomic.Int64
	pushback  metadata.MD
	attrs     attrCache
}

// ServerInterceptors returns the server interceptors, unary and stream, sharing one
// concurrency limit. Each call passes, outermost first:
//
//	load shedding ( minimum deadline ( tracing and usage ( recovery ( handler ) ) ) )
//
// load shedding refuses calls over MaxConcurrentCalls with RESOURCE_EXHAUSTED and the minimum
// deadline refuses calls that cannot finish in time with DEADLINE_EXCEEDED, both before any
// work (refused calls get no span); tracing starts the server span; usage lets the handler
// call [ReportUsage] and turns what it reports into trailers and span attributes; recovery
// turns a handler panic into INTERNAL (recorded on the span) and logs it. [ServerOptions] installs them; use this
// function to chain them with interceptors of your own.
func ServerInterceptors(cfg ServerConfig) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor, error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, err
	}
	s := &serverInterceptors{cfg: cfg, exempt: cfg.ExemptMethods, operation: cfg.TraceOperation, provider: cfg.TraceProvider}
	if s.operation == "" {
		s.operation = DefaultTraceOperation
	}
	if s.provider == "" {
		s.provider = DefaultTraceProvider
	}
	if s.exempt == nil {
		s.exempt = defaultExempt()
	}
	if cfg.ShedRetryAfter > 0 {
		ms := max(cfg.ShedRetryAfter.Milliseconds(), 1)
		s.pushback = metadata.Pairs("grpc-retry-pushback-ms", strconv.FormatInt(ms, 10))
	}
	return s.unary, s.stream, nil
}

func (s *serverInterceptors) isExempt(method string) bool {
	for _, e := range s.exempt {
		if method == e || (strings.HasSuffix(e, "/") && strings.HasPrefix(method, e)) {
			return true
		}
	}
	return false
}

// admit runs the checks that come before the handler. It returns a release func (nil when
// nothing was acquired) or the refusal.
func (s *serverInterceptors) admit(ctx context.Context, method string, setTrailer func(metadata.MD)) (release func(), err error) {
	if s.isExempt(method) {
		return nil, nil
	}
	if limit := s.cfg.MaxConcurrentCalls; limit > 0 {
		if n := s.inflight.Add(1); n > int64(limit) {
			s.inflight.Add(-1)
			if s.pushback != nil {
				setTrailer(s.pushback)
			}
			return nil, status.Errorf(codes.ResourceExhausted, "grpcinfer: server at its limit of %d concurrent calls", limit)
		}
		release = func() { s.inflight.Add(-1) }
	}
	if floor := s.cfg.MinRemainingDeadline; floor > 0 {
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left < floor {
				if release != nil {
					release()
				}
				return nil, status.Errorf(codes.DeadlineExceeded, "grpcinfer: remaining deadline %v is below the server's minimum %v", left.Round(time.Microsecond), floor)
			}
		}
	}
	return release, nil
}

func (s *serverInterceptors) recovered(ctx context.Context, method string, p any) error {
	if s.cfg.Logger != nil {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelError, "grpcinfer: panic in handler",
			slog.String("method", method),
			slog.String("panic", fmt.Sprint(p)),
			slog.String("stack", string(debug.Stack())))
	}
	return status.Errorf(codes.Internal, "grpcinfer: internal error in %s", method)
}

func (s *serverInterceptors) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	release, err := s.admit(ctx, info.FullMethod, func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) })
	if err != nil {
		return nil, err
	}
	if release != nil {
		defer release()
	}
	u := &usage{noLegacy: s.cfg.DisableLegacyLLMTags}
	ctx, u.call = s.startTrace(ctx, info.FullMethod, req)
	ctx = context.WithValue(ctx, usageKey{}, u)
	resp, err = s.runUnary(ctx, req, info, handler)
	if md := u.finish(ctx); md != nil {
		_ = grpc.SetTrailer(ctx, md)
	}
	if u.call != nil {
		u.call.Response(modelOf(resp), idOf(resp))
		u.call.End(err, errorType(err))
	}
	return resp, err
}

// runUnary runs the handler, turning a panic into INTERNAL.
func (s *serverInterceptors) runUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, s.recovered(ctx, info.FullMethod, p)
		}
	}()
	return handler(ctx, req)
}

func (s *serverInterceptors) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	ctx := ss.Context()
	release, err := s.admit(ctx, info.FullMethod, ss.SetTrailer)
	if err != nil {
		return err
	}
	if release != nil {
		defer release()
	}
	u := &usage{noLegacy: s.cfg.DisableLegacyLLMTags}
	ctx, u.call = s.startTrace(ctx, info.FullMethod, nil)
	ctx = context.WithValue(ctx, usageKey{}, u)
	err = s.runStream(srv, &usageStream{ServerStream: ss, ctx: ctx}, info, handler)
	if md := u.finish(ctx); md != nil {
		ss.SetTrailer(md)
	}
	if u.call != nil {
		u.call.End(err, errorType(err))
	}
	return err
}

// runStream runs the handler, turning a panic into INTERNAL.
func (s *serverInterceptors) runStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.recovered(ss.Context(), info.FullMethod, p)
		}
	}()
	return handler(srv, ss)
}

// startTrace starts the server span of a call when ServerConfig.Tracing records anything,
// joining the caller's trace from the request metadata.
func (s *serverInterceptors) startTrace(ctx context.Context, method string, req any) (context.Context, *tracing.Call) {
	in := s.cfg.Tracing
	if in == nil {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	ctx = in.Extract(ctx, mdCarrier(md))
	return in.Start(ctx, tracing.Request{
		Operation: s.operation, Provider: s.provider, Model: modelOf(req), Server: true,
		Stream: req == nil, RequestID: idOf(req), Attributes: s.attrs.rpcAttrs(method),
	})
}

// usageStream gives the handler a context that carries the usage recorder.
type usageStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *usageStream) Context() context.Context { return s.ctx }
