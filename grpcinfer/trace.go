package grpcinfer

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/tracing"
)

// Tracing defaults: gen_ai.operation.name and gen_ai.provider.name of inference RPCs.
const (
	DefaultTraceOperation = "infer"
	DefaultTraceProvider  = "oip"
)

// mdCarrier adapts gRPC metadata to the OpenTelemetry propagation carrier.
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// injectOutgoing adds the trace context of ctx to its outgoing metadata.
func injectOutgoing(ctx context.Context, in *tracing.Instrumenter) context.Context {
	md := metadata.MD{}
	in.Inject(ctx, mdCarrier(md))
	if len(md) == 0 {
		return ctx
	}
	kv := make([]string, 0, 2*len(md))
	for k, vs := range md {
		for _, v := range vs {
			kv = append(kv, k, v)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// modelOf returns the model a request or response names, for messages that have one (the
// Open Inference Protocol's ModelInferRequest and ModelInferResponse do).
func modelOf(m any) string {
	if g, ok := m.(interface{ GetModelName() string }); ok {
		return g.GetModelName()
	}
	return ""
}

func idOf(m any) string {
	if g, ok := m.(interface{ GetId() string }); ok {
		return g.GetId()
	}
	return ""
}

// targetAddr returns server.address and server.port from a channel target such as
// "dns:///host:port" or "host:port".
func targetAddr(target string) (string, int) {
	if i := strings.Index(target, ":///"); i >= 0 {
		target = target[i+4:]
	} else if i := strings.Index(target, "://"); i >= 0 {
		target = target[i+3:]
	}
	host, p, err := net.SplitHostPort(target)
	if err != nil {
		return target, 0
	}
	port, _ := strconv.Atoi(p)
	return host, port
}

// attrCache memoises per-method span attributes and per-target addresses, so that starting
// a call (which is all there is to do when no span is recorded) does not allocate them.
type attrCache struct {
	methods sync.Map // full method -> []attribute.KeyValue
	targets sync.Map // channel target -> hostPort
}

type hostPort struct {
	host string
	port int
}

func (c *attrCache) rpcAttrs(method string) []attribute.KeyValue {
	if v, ok := c.methods.Load(method); ok {
		return v.([]attribute.KeyValue)
	}
	attrs := []attribute.KeyValue{semconv.RPCSystemNameGRPC, semconv.RPCMethodKey.String(strings.TrimPrefix(method, "/"))}
	v, _ := c.methods.LoadOrStore(method, attrs[:len(attrs):len(attrs)])
	return v.([]attribute.KeyValue)
}

func (c *attrCache) target(target string) hostPort {
	if v, ok := c.targets.Load(target); ok {
		return v.(hostPort)
	}
	host, port := targetAddr(target)
	c.targets.Store(target, hostPort{host, port})
	return hostPort{host, port}
}

// errorType is the low-cardinality error.type of a failed call: the breaker class when the
// error has one, else the gRPC code name.
func errorType(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Verdict.Class != "" {
		return string(e.Verdict.Class)
	}
	return status.Code(err).String()
}

// callTrace follows the attempts of one call on its span. Attempts run one after another, but
// an attempt the time limiter abandoned may still be finishing, hence the lock.
type callTrace struct {
	in   *tracing.Instrumenter
	call *tracing.Call

	mu        sync.Mutex
	n         int
	prevEnd   time.Time
	prevClass string
}

// startAttempt begins an attempt span (recording the retry that led to it) and returns the
// attempt's context with the trace context in its outgoing metadata.
func (t *callTrace) startAttempt(ctx context.Context) (context.Context, *tracing.Attempt) {
	if t == nil {
		return ctx, nil
	}
	t.mu.Lock()
	t.n++
	n := t.n
	if n > 1 {
		t.call.Retry(n-1, time.Since(t.prevEnd), t.prevClass)
	}
	t.mu.Unlock()
	actx, att := t.call.StartAttempt(ctx, n)
	return injectOutgoing(actx, t.in), att
}

// endAttempt records an attempt's mesh facts and outcome.
func (t *callTrace) endAttempt(att *tracing.Attempt, err error, header, trailer metadata.MD) {
	if t == nil {
		return
	}
	env := ParseEnvoy(header, trailer)
	if env.UpstreamServiceTime > 0 || env.Overloaded || env.AttemptCount > 0 {
		att.Mesh(tracing.Mesh{UpstreamServiceTime: env.UpstreamServiceTime, Overloaded: env.Overloaded, AttemptCount: env.AttemptCount})
	}
	et := errorType(err)
	att.End(err, et)
	t.mu.Lock()
	t.prevEnd, t.prevClass = time.Now(), et
	t.mu.Unlock()
}

// success records what a successful response tells: usage trailers, model and id.
func (t *callTrace) success(reply any, trailer metadata.MD) {
	if t == nil {
		return
	}
	if u, ok := UsageFromTrailer(trailer); ok {
		t.call.Usage(tracing.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, TotalTokens: u.TotalTokens()})
	}
	t.call.Response(modelOf(reply), idOf(reply))
}

func (t *callTrace) end(err error) {
	if t == nil {
		return
	}
	if err != nil && status.Code(err) == codes.Canceled {
		t.call.End(err, "canceled")
		return
	}
	t.call.End(err, errorType(err))
}
