package tracing

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/infermesh/infermesh/internal/wire"
)

// Request describes one logical GenAI call (or inference RPC) at its start.
type Request struct {
	// Operation is gen_ai.operation.name: "chat", "text_completion",
	// "embeddings", or another name such as "infer" for an inference RPC.
	// Empty means "chat".
	Operation string
	// Provider is gen_ai.provider.name, such as "openai" or "azure.ai.openai".
	// Empty means "openai".
	Provider string
	// Model is gen_ai.request.model, the model asked for.
	Model string
	// Stream is gen_ai.request.stream: the response is streamed. Streamed
	// calls record time to first chunk and count chunks.
	Stream bool
	// ServerAddress and ServerPort are server.address and server.port of the
	// endpoint called (see ServerFromURL). Zero values are not recorded.
	ServerAddress string
	ServerPort    int
	// Internal marks an in-process call (such as an in-process fallback): the
	// span kind is INTERNAL instead of CLIENT.
	Internal bool
	// Server marks the server side of an RPC (span kind SERVER; the server
	// GenAI metrics instead of the client ones). Internal takes precedence.
	Server bool
	// RequestID is the request's id, recorded as request.id with LegacyLLMTags.
	RequestID string
	// Attributes are added to the span at its start (for example rpc.method
	// from an RPC interceptor). Never put credentials here.
	Attributes []attribute.KeyValue
}

// Usage is a token count reported by the provider. A negative count means it
// was not reported. TotalTokens zero or negative is computed as the sum of the
// other two when both are known.
type Usage struct {
	InputTokens, OutputTokens, TotalTokens int64
}

// Mesh holds the service mesh signals of one response (from Envoy's
// x-envoy-* response headers).
type Mesh struct {
	// UpstreamServiceTime is x-envoy-upstream-service-time; zero when absent.
	UpstreamServiceTime time.Duration
	// ClientTime is the client-observed time of the same exchange (request
	// sent to response headers received). Zero means: measure it now, from
	// the start of the current attempt (or of the call).
	ClientTime time.Duration
	// Overloaded is x-envoy-overloaded: the sidecar shed the request.
	Overloaded bool
	// AttemptCount is x-envoy-attempt-count; zero when absent.
	AttemptCount int
}

type callKey struct{}

// Call.flags bits.
const (
	flagEnded uint32 = 1 << iota // End has run
	flagFirst                    // the first content chunk is recorded
	flagMeta                     // the response model is recorded
)

// CallFromContext returns the Call that Start put in ctx (or in a parent of
// ctx), or nil. Hooks that only get a context, such as retry hooks, use it.
func CallFromContext(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}

// Call is one logical GenAI call: one span, plus the metrics recorded when it
// ends. All methods are safe for concurrent use, do nothing on a nil *Call,
// and do nothing after End. Start returns a nil *Call when nothing would be
// recorded (no-op providers), so instrumentation then costs nothing.
type Call struct {
	in       *Instrumenter
	sh       *shape
	ctx      context.Context
	span     trace.Span
	rec      bool // the span records
	start    time.Time
	op       string
	provider string
	model    string
	stream   bool
	server   bool
	addr     string
	port     int

	mu           sync.Mutex
	ended        bool
	attemptStart time.Time
	attempts     int
	retries      int
	respModel    string
	respID       string
	requestID    string
	reasons      []string
	reasonBuf    [1]string // backs reasons for the usual single reason
	usageIn      int64
	usageOut     int64
	usageTotal   int64
	hasUsage     bool
	firstChunk   time.Time
	chunks       atomic.Int64
	// flags lets ObserveChunk skip the lock for an ordinary content chunk.
	flags        atomic.Uint32
	parser       *wire.Parser // ObserveEvent's stream parser, guarded by pmu; most calls never need one
	pmu          sync.Mutex
	breakerState string
	fallback     string
	mesh         Mesh
	hasMesh      bool
	input        string
	output       string
	hasOutput    bool
	outRaw       []byte // captured raw output text (JSON string contents)
}

// Start begins a logical call. The returned context carries the call's span
// (so trace context propagates from it) and the Call itself (see
// CallFromContext). End must be called exactly once when the call is over
// (for a stream: when the stream is closed or fails).
//
// When neither a span nor a metric would be recorded (no-op or unset global
// providers), Start returns ctx unchanged and a nil *Call, without allocating.
func (in *Instrumenter) Start(ctx context.Context, r Request) (context.Context, *Call) {
	if in == nil {
		return ctx, nil
	}
	tracerOff := in.tracerOff || (in.defaultGlobal != nil && otel.GetTracerProvider() == in.defaultGlobal)
	metricsOn := in.metricsEnabled(ctx, r.Server)
	if tracerOff && !metricsOn {
		return noCall(ctx), nil
	}
	op, provider := r.Operation, r.Provider
	if op == "" {
		op = "chat"
	}
	if provider == "" {
		provider = "openai"
	}
	kind := trace.SpanKindClient
	switch {
	case r.Internal:
		kind = trace.SpanKindInternal
	case r.Server:
		kind = trace.SpanKindServer
	}
	c := &Call{
		in: in, op: op, provider: provider, model: r.Model, stream: r.Stream, server: r.Server && !r.Internal,
		addr: r.ServerAddress, port: r.ServerPort, requestID: r.RequestID,
		usageIn: -1, usageOut: -1, usageTotal: -1,
	}
	c.sh = in.shape(shapeKey{op, provider, r.Model, r.ServerAddress, r.ServerPort, r.Stream, kind})
	if tracerOff {
		c.span = trace.SpanFromContext(ctx)
		c.start = time.Now()
	} else {
		// request.id is set by End only (with the id the response may have
		// brought): at the start it would cost every recorded call a copy of
		// the start options, for samplers that do not read it.
		opts := c.sh.start
		if len(r.Attributes) > 0 {
			opts = append(opts[:len(opts):len(opts)], trace.WithAttributes(r.Attributes...))
		}
		ctx, c.span = in.tracer.Start(ctx, c.sh.name, opts...)
		// From the span's own start, times measured from c.start (time to
		// first chunk, mesh client time) fit in the span.
		c.start = spanStart(c.span)
		c.rec = c.span.IsRecording()
		if !c.rec && !metricsOn {
			return noCall(ctx), nil // sampled out
		}
	}
	ctx = context.WithValue(ctx, callKey{}, c)
	c.ctx = ctx
	return ctx, c
}

// noCall hides an outer Call from CallFromContext when Start returns nil.
func noCall(ctx context.Context) context.Context {
	if ctx.Value(callKey{}) != nil {
		return context.WithValue(ctx, callKey{}, (*Call)(nil))
	}
	return ctx
}

// spanStart returns the start time of a span that was just started: its own
// when it tells it (the SDK's spans do, for less than time.Now costs), or now.
func spanStart(s trace.Span) time.Time {
	if r, ok := s.(interface{ StartTime() time.Time }); ok {
		if t := r.StartTime(); !t.IsZero() {
			return t
		}
	}
	return time.Now()
}

func spanName(op, model string) string {
	if model == "" {
		return op
	}
	return op + " " + model
}

func (in *Instrumenter) metricsEnabled(ctx context.Context, server bool) bool {
	if server {
		return in.serverDuration.Enabled(ctx) || in.serverTTFT.Enabled(ctx) ||
			in.retries.Enabled(ctx) || in.fallbacks.Enabled(ctx) || in.budget.Enabled(ctx)
	}
	return in.duration.Enabled(ctx) || in.tokenUsage.Enabled(ctx) || in.ttfc.Enabled(ctx) ||
		in.retries.Enabled(ctx) || in.fallbacks.Enabled(ctx) || in.budget.Enabled(ctx)
}

// Span returns the call's span (a non-recording span when only metrics are
// recorded, or for a nil Call).
func (c *Call) Span() trace.Span {
	if c == nil {
		return trace.SpanFromContext(context.Background())
	}
	return c.span
}

// Retry records that attempt (1-based) failed and the call will retry after
// wait, for reason (an error class such as "rate_limited"): an event on the
// call span and the infermesh.retries counter.
func (c *Call) Retry(attempt int, wait time.Duration, reason string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.retries++
	c.attempts = max(c.attempts, attempt)
	c.mu.Unlock()
	if c.rec {
		c.span.AddEvent(RetryEvent, trace.WithAttributes(
			AttemptKey.Int(attempt),
			RetryWaitKey.Float64(wait.Seconds()),
			RetryReasonKey.String(reason),
		))
	}
	c.count(c.in.retries, semconv.ServerAddressKey.String(c.addr), RetryReasonKey.String(reason))
}

// BudgetRejected records that the retry budget refused to retry attempt
// (1-based) that failed for reason: an event on the call span and the
// infermesh.budget.rejections counter.
func (c *Call) BudgetRejected(attempt int, reason string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	ended := c.ended
	c.mu.Unlock()
	if ended {
		return
	}
	if c.rec {
		c.span.AddEvent(BudgetRejectedEvent, trace.WithAttributes(
			AttemptKey.Int(attempt),
			RetryReasonKey.String(reason),
		))
	}
	c.count(c.in.budget, semconv.ServerAddressKey.String(c.addr))
}

// Breaker records the circuit breaker state the call saw ("closed",
// "half-open", "open"); the last one is kept.
func (c *Call) Breaker(state string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.ended {
		c.breakerState = state
	}
	c.mu.Unlock()
}

// Fallback records that the call was handed to the fallback target: the
// infermesh.fallback.target attribute, an event and the infermesh.fallbacks
// counter. StartFallback calls it.
func (c *Call) Fallback(target string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.fallback = target
	c.mu.Unlock()
	if c.rec {
		c.span.AddEvent(FallbackEvent, trace.WithAttributes(FallbackTargetKey.String(target)))
	}
	c.count(c.in.fallbacks, FallbackTargetKey.String(target))
}

// count adds one to a resilience counter, with the call's operation and provider and
// the given attributes, when the counter is enabled.
func (c *Call) count(ctr metric.Int64Counter, extra ...attribute.KeyValue) {
	if !ctr.Enabled(c.ctx) {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 2+len(extra))
	attrs = append(attrs, semconv.GenAIOperationNameKey.String(c.op), semconv.GenAIProviderNameKey.String(c.provider))
	ctr.Add(c.ctx, 1, metric.WithAttributes(append(attrs, extra...)...))
}

// Mesh records the mesh signals of the latest response; the last one is kept.
// When m.UpstreamServiceTime is set and m.ClientTime is zero, the client time
// is measured now from the start of the current attempt.
func (c *Call) Mesh(m Mesh) {
	if c == nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	if !c.ended {
		c.setMeshLocked(m, now)
	}
	c.mu.Unlock()
}

func (c *Call) setMeshLocked(m Mesh, now time.Time) {
	if m.UpstreamServiceTime > 0 && m.ClientTime <= 0 {
		from := c.attemptStart
		if from.IsZero() {
			from = c.start
		}
		m.ClientTime = now.Sub(from)
	}
	c.mesh, c.hasMesh = m, true
}

// FirstChunk records when the first content chunk of a stream arrived, if no
// earlier one was recorded (ObserveChunk records it by itself).
func (c *Call) FirstChunk(t time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.ended && c.firstChunk.IsZero() {
		c.firstChunk = t
		c.flags.Or(flagFirst)
	}
	c.mu.Unlock()
}

// Usage records the provider-reported token usage (the last call wins).
func (c *Call) Usage(u Usage) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.ended {
		c.usageIn, c.usageOut, c.usageTotal = max(u.InputTokens, -1), max(u.OutputTokens, -1), u.TotalTokens
		if c.usageTotal <= 0 {
			c.usageTotal = -1
		}
		c.hasUsage = true
	}
	c.mu.Unlock()
}

// Response records the response's model and id and appends its finish
// reasons. Empty values are ignored.
func (c *Call) Response(model, id string, finishReasons ...string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.ended {
		if model != "" {
			c.respModel = model
			c.flags.Or(flagMeta)
		}
		if id != "" {
			c.respID = id
		}
		for _, r := range finishReasons {
			c.addReasonLocked(r)
		}
	}
	c.mu.Unlock()
}

// maxReasons bounds the finish reasons kept per call.
const maxReasons = 16

func (c *Call) addReasonLocked(r string) {
	if r != "" && len(c.reasons) < maxReasons {
		if c.reasons == nil {
			c.reasons = c.reasonBuf[:0]
		}
		c.reasons = append(c.reasons, r)
	}
}

// RequestID records the request's id (request.id with LegacyLLMTags), such
// as one the server returned.
func (c *Call) RequestID(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.ended && id != "" {
		c.requestID = id
	}
	c.mu.Unlock()
}

// CaptureContent reports whether Content would record anything, so a caller
// can skip building the strings.
func (c *Call) CaptureContent() bool {
	return c != nil && c.rec && c.in.capture
}

// Content records the prompt (input) and the completion (output) as
// gen_ai.input.messages and gen_ai.output.messages, each truncated to
// Config.MaxContentBytes, only when Config.CaptureContent is on. Pass the
// messages as JSON (the semantic conventions' message schema, or the
// provider's own messages array); truncation may cut the JSON short. An empty
// output keeps the completion that ObserveJSON or ObserveChunk captured.
func (c *Call) Content(input, output string) {
	if !c.CaptureContent() {
		return
	}
	c.mu.Lock()
	if !c.ended {
		c.input = truncateString(input, c.in.maxContent)
		if output != "" {
			c.output, c.hasOutput = truncateString(output, c.in.maxContent), true
		}
	}
	c.mu.Unlock()
}

// End ends the call: it sets the span's final attributes and status, ends the
// span and records the metrics. err is the call's error (nil on success) and
// errorType its low-cardinality class for error.type (such as "timeout",
// "rate_limited" or an HTTP status code); when errorType is empty and err is
// not nil, the class is "timeout" or "canceled" for context errors and
// "_OTHER" otherwise. A non-empty errorType with a nil err (an error event in
// a 200 stream) also marks the call failed. The error's text is never
// recorded: it may hold data that must not leave the process.
func (c *Call) End(err error, errorType string) {
	if c == nil {
		return
	}
	d := time.Since(c.start) // a monotonic read costs half of time.Now
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.flags.Or(flagEnded)
	c.mu.Unlock()
	// From here on no method changes the call (they all check ended).

	if errorType == "" && err != nil {
		errorType = classify(err)
	}
	if c.rec {
		c.endSpan(errorType)
	}
	c.recordMetrics(d, errorType)
}

func classify(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return ErrorTypeOther
}

func (c *Call) responseModel() string {
	if c.respModel != "" {
		return c.respModel
	}
	return c.model
}

func (c *Call) total() int64 {
	if c.usageTotal > 0 {
		return c.usageTotal
	}
	if c.usageIn >= 0 && c.usageOut >= 0 {
		return c.usageIn + c.usageOut
	}
	return -1
}

func (c *Call) endSpan(errorType string) {
	var buf [24]attribute.KeyValue
	attrs := buf[:0]
	if c.respModel != "" {
		attrs = append(attrs, semconv.GenAIResponseModelKey.String(c.respModel))
	}
	if c.respID != "" {
		attrs = append(attrs, semconv.GenAIResponseIDKey.String(c.respID))
	}
	if len(c.reasons) > 0 {
		attrs = append(attrs, semconv.GenAIResponseFinishReasonsKey.StringSlice(c.reasons))
	}
	if c.hasUsage {
		if c.usageIn >= 0 {
			attrs = append(attrs, semconv.GenAIUsageInputTokensKey.Int64(c.usageIn))
		}
		if c.usageOut >= 0 {
			attrs = append(attrs, semconv.GenAIUsageOutputTokensKey.Int64(c.usageOut))
		}
	}
	if c.stream {
		if !c.firstChunk.IsZero() {
			attrs = append(attrs, semconv.GenAIResponseTimeToFirstChunkKey.Float64(c.firstChunk.Sub(c.start).Seconds()))
		}
		attrs = append(attrs, StreamChunksKey.Int64(c.chunks.Load()))
	}
	attrs = append(attrs, AttemptsKey.Int(max(c.attempts, c.retries+1, 1)))
	if c.breakerState != "" {
		attrs = append(attrs, BreakerStateKey.String(c.breakerState))
	}
	if c.fallback != "" {
		attrs = append(attrs, FallbackTargetKey.String(c.fallback))
	}
	attrs = appendMesh(attrs, c.mesh, c.hasMesh)
	if c.in.legacy {
		attrs = append(attrs, LegacyModelKey.String(c.responseModel()))
		if c.hasUsage {
			if c.usageIn >= 0 {
				attrs = append(attrs, LegacyInputTokensKey.Int64(c.usageIn))
			}
			if c.usageOut >= 0 {
				attrs = append(attrs, LegacyOutputTokensKey.Int64(c.usageOut))
			}
			if t := c.total(); t >= 0 {
				attrs = append(attrs, LegacyTotalTokensKey.Int64(t))
			}
		}
		if c.requestID != "" {
			attrs = append(attrs, LegacyRequestIDKey.String(c.requestID))
		}
	}
	if c.in.capture {
		if c.input != "" {
			attrs = append(attrs, semconv.GenAIInputMessagesKey.String(c.input))
		}
		if out := c.outputMessages(); out != "" {
			attrs = append(attrs, semconv.GenAIOutputMessagesKey.String(out))
		}
	}
	if errorType != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(errorType))
		c.span.SetStatus(codes.Error, errorType)
	}
	// The span may keep what it is given: hand it a copy of just the right size.
	c.span.SetAttributes(slices.Clone(attrs)...)
	c.span.End()
}

func appendMesh(attrs []attribute.KeyValue, m Mesh, has bool) []attribute.KeyValue {
	if !has {
		return attrs
	}
	if m.UpstreamServiceTime > 0 {
		attrs = append(attrs,
			MeshUpstreamServiceTimeKey.Float64(m.UpstreamServiceTime.Seconds()),
			MeshClientTimeKey.Float64(m.ClientTime.Seconds()),
			MeshOverheadKey.Float64((m.ClientTime - m.UpstreamServiceTime).Seconds()),
		)
	}
	if m.Overloaded {
		attrs = append(attrs, MeshOverloadedKey.Bool(true))
	}
	if m.AttemptCount > 0 {
		attrs = append(attrs, MeshAttemptCountKey.Int(m.AttemptCount))
	}
	return attrs
}

func (c *Call) recordMetrics(d time.Duration, errorType string) {
	ctx := c.ctx
	in := c.in
	dur, ttf := in.duration, in.ttfc
	if c.server {
		dur, ttf = in.serverDuration, in.serverTTFT
	}
	durOn, ttfOn := dur.Enabled(ctx), c.stream && !c.firstChunk.IsZero() && ttf.Enabled(ctx)
	tokOn := !c.server && c.hasUsage && (c.usageIn >= 0 || c.usageOut >= 0) && in.tokenUsage.Enabled(ctx)
	if !durOn && !ttfOn && !tokOn {
		return
	}
	s := c.sh.seriesOf(c.respModel)
	if durOn {
		opts := s.plain
		if errorType != "" {
			opts = s.failedDur(errorType)
		}
		dur.Record(ctx, d.Seconds(), opts...)
	}
	// Time to first chunk and token usage are recorded without error.type.
	if ttfOn {
		ttf.Record(ctx, c.firstChunk.Sub(c.start).Seconds(), s.plain...)
	}
	if tokOn && c.usageIn >= 0 {
		in.tokenUsage.Record(ctx, c.usageIn, s.tokIn...)
	}
	if tokOn && c.usageOut >= 0 {
		in.tokenUsage.Record(ctx, c.usageOut, s.tokOut...)
	}
}
