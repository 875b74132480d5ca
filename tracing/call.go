package tracing

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/infermesh/infermesh/internal/mesh"
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
	// RequestID is the request's id, recorded as request.id with the legacy tags.
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

// Mesh holds the service mesh signals of one response: Envoy's
// x-envoy-upstream-service-time, x-envoy-overloaded and x-envoy-attempt-count
// and its local replies. It is the one model of mesh signals in this module
// (transport.Envoy and grpcinfer.Envoy are the same type). The client's own
// time of the exchange is measured when it is recorded.
type Mesh = mesh.Envoy

type callKey struct{}

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
	usage        Usage
	hasUsage     bool
	firstChunk   time.Time
	chunks       int
	breakerState string
	fallback     string
	backend      string
	hedged       bool
	hedgeWinner  string
	hasQuota     bool
	quotaMode    string
	quotaWait    time.Duration
	quotaTokens  int
	mesh         Mesh
	clientTime   time.Duration // the client's time of the exchange mesh describes
	hasMesh      bool
	input        string
	output       []byte // captured completion text (CaptureContent)
	outputJSON   bool   // output was set by Content, as messages JSON
}

// Start begins a logical call. The returned context carries the call's span
// (so trace context propagates from it) and the Call itself (see
// CallFromContext). End must be called exactly once when the call is over
// (for a stream: when the stream is closed or fails).
//
// When neither a span nor a metric would be recorded (no-op or unset global
// providers), Start returns ctx unchanged and a nil *Call.
func (in *Instrumenter) Start(ctx context.Context, r Request) (context.Context, *Call) {
	if in == nil {
		return ctx, nil
	}
	tracerOff := in.tracerOff || (in.defaultGlobal != nil && otel.GetTracerProvider() == in.defaultGlobal)
	metricsOn := in.metricsEnabled(ctx, r.Server)
	if tracerOff && !metricsOn {
		return noCall(ctx), nil
	}
	c := &Call{
		in: in, op: r.Operation, provider: r.Provider, model: r.Model, stream: r.Stream,
		server: r.Server && !r.Internal, addr: r.ServerAddress, port: r.ServerPort, requestID: r.RequestID,
		usage: Usage{-1, -1, -1},
	}
	if c.op == "" {
		c.op = "chat"
	}
	if c.provider == "" {
		c.provider = "openai"
	}
	if tracerOff {
		c.span = trace.SpanFromContext(ctx)
		c.start = time.Now()
	} else {
		ctx, c.span = in.tracer.Start(ctx, spanName(c.op, c.model), c.startOptions(r)...)
		c.start = time.Now()
		c.rec = c.span.IsRecording()
		if !c.rec && !metricsOn {
			return noCall(ctx), nil // sampled out
		}
	}
	ctx = context.WithValue(ctx, callKey{}, c)
	c.ctx = ctx
	return ctx, c
}

// startOptions are the call span's kind and start attributes.
func (c *Call) startOptions(r Request) []trace.SpanStartOption {
	kind := trace.SpanKindClient
	switch {
	case r.Internal:
		kind = trace.SpanKindInternal
	case r.Server:
		kind = trace.SpanKindServer
	}
	attrs := []attribute.KeyValue{
		semconv.GenAIOperationNameKey.String(c.op),
		semconv.GenAIProviderNameKey.String(c.provider),
		semconv.GenAIRequestStreamKey.Bool(c.stream),
	}
	if c.model != "" {
		attrs = append(attrs, semconv.GenAIRequestModelKey.String(c.model))
	}
	attrs = appendServer(attrs, c.addr, c.port)
	attrs = append(attrs, r.Attributes...)
	return []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(attrs...)}
}

// noCall hides an outer Call from CallFromContext when Start returns nil.
func noCall(ctx context.Context) context.Context {
	if ctx.Value(callKey{}) != nil {
		return context.WithValue(ctx, callKey{}, (*Call)(nil))
	}
	return ctx
}

func spanName(op, model string) string {
	if model == "" {
		return op
	}
	return op + " " + model
}

func appendServer(attrs []attribute.KeyValue, addr string, port int) []attribute.KeyValue {
	if addr != "" {
		attrs = append(attrs, semconv.ServerAddressKey.String(addr))
	}
	if port > 0 {
		attrs = append(attrs, semconv.ServerPortKey.Int(port))
	}
	return attrs
}

func (in *Instrumenter) metricsEnabled(ctx context.Context, server bool) bool {
	if server {
		return in.serverDuration.Enabled(ctx) || in.serverTTFT.Enabled(ctx) ||
			in.retries.Enabled(ctx) || in.fallbacks.Enabled(ctx) || in.budget.Enabled(ctx)
	}
	return in.duration.Enabled(ctx) || in.tokenUsage.Enabled(ctx) || in.ttfc.Enabled(ctx) ||
		in.retries.Enabled(ctx) || in.fallbacks.Enabled(ctx) || in.budget.Enabled(ctx) ||
		in.quotaAdmissions.Enabled(ctx) || in.quotaWait.Enabled(ctx) || in.quotaTokens.Enabled(ctx) ||
		in.quotaRemaining.Enabled(ctx)
}

// Span returns the call's span (a non-recording span when only metrics are
// recorded, or for a nil Call).
func (c *Call) Span() trace.Span {
	if c == nil {
		return trace.SpanFromContext(context.Background())
	}
	return c.span
}

// update runs f under the call's lock unless the call has ended, and reports
// whether it ran.
func (c *Call) update(f func()) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return false
	}
	f()
	return true
}

// Retry records that attempt (1-based) failed and the call will retry after
// wait, for reason (an error class such as "rate_limited"): an event on the
// call span and the infermesh.retries counter.
func (c *Call) Retry(attempt int, wait time.Duration, reason string) {
	if !c.update(func() { c.retries++; c.attempts = max(c.attempts, attempt) }) {
		return
	}
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
	if !c.update(func() {}) {
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
func (c *Call) Breaker(state string) { c.update(func() { c.breakerState = state }) }

// Backend records the named backend a steered call went to (infermesh.backend); the
// last one is kept.
func (c *Call) Backend(name string) { c.update(func() { c.backend = name }) }

// Hedge records that the call was hedged on a second backend (infermesh.hedge) and
// which backend's answer the caller got (infermesh.hedge.winner; "" while undecided).
func (c *Call) Hedge(winner string) {
	c.update(func() { c.hedged, c.hedgeWinner = true, winner })
}

// Fallback records that the call was handed to the fallback target: the
// infermesh.fallback.target attribute, an event and the infermesh.fallbacks
// counter. StartFallback calls it.
func (c *Call) Fallback(target string) {
	if !c.update(func() { c.fallback = target }) {
		return
	}
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
	attrs := append([]attribute.KeyValue{semconv.GenAIOperationNameKey.String(c.op), semconv.GenAIProviderNameKey.String(c.provider)}, extra...)
	ctr.Add(c.ctx, 1, metric.WithAttributes(attrs...))
}

// Mesh records the mesh signals of the latest response; the last one is kept.
// The client's own time of the exchange is measured now, from the start of the
// current attempt (or of the call).
func (c *Call) Mesh(m Mesh) {
	now := time.Now()
	c.update(func() {
		from := c.attemptStart
		if from.IsZero() {
			from = c.start
		}
		c.mesh, c.clientTime, c.hasMesh = m, now.Sub(from), true
	})
}

// FirstChunk records when the first chunk with output of a stream arrived, if
// no earlier one was recorded.
func (c *Call) FirstChunk(t time.Time) {
	c.update(func() {
		if c.firstChunk.IsZero() {
			c.firstChunk = t
		}
	})
}

// Chunk counts one stream chunk that carries output (infermesh.stream.chunks).
func (c *Call) Chunk() { c.update(func() { c.chunks++ }) }

// Usage records the provider-reported token usage (the last call wins).
func (c *Call) Usage(u Usage) {
	c.update(func() {
		c.usage = Usage{max(u.InputTokens, -1), max(u.OutputTokens, -1), u.TotalTokens}
		if c.usage.TotalTokens <= 0 {
			c.usage.TotalTokens = -1
		}
		c.hasUsage = true
	})
}

// maxReasons bounds the finish reasons kept per call.
const maxReasons = 16

// Response records the response's model and id and appends its finish
// reasons. Empty values are ignored.
func (c *Call) Response(model, id string, finishReasons ...string) {
	c.update(func() {
		if model != "" {
			c.respModel = model
		}
		if id != "" {
			c.respID = id
		}
		for _, r := range finishReasons {
			if r != "" && len(c.reasons) < maxReasons {
				c.reasons = append(c.reasons, r)
			}
		}
	})
}

// RequestID records the request's id (request.id with the legacy tags), such
// as one the server returned.
func (c *Call) RequestID(id string) {
	if id != "" {
		c.update(func() { c.requestID = id })
	}
}

// CaptureContent reports whether Content and Output would record anything, so
// a caller can skip building the strings.
func (c *Call) CaptureContent() bool {
	return c != nil && c.rec && c.in.capture
}

// Content records the prompt (input) and the completion (output) as
// gen_ai.input.messages and gen_ai.output.messages, each truncated to
// Config.MaxContentBytes, only when Config.CaptureContent is on. Pass the
// messages as JSON (the semantic conventions' message schema, or the
// provider's own messages array); truncation may cut the JSON short. An empty
// output keeps the completion text that Output collected.
func (c *Call) Content(input, output string) {
	if !c.CaptureContent() {
		return
	}
	c.update(func() {
		c.input = truncateString(input, c.in.maxContent)
		if output != "" {
			c.output, c.outputJSON = []byte(truncateString(output, c.in.maxContent)), true
		}
	})
}

// Output appends completion text (a stream's content delta, or a whole
// response's text), recorded as gen_ai.output.messages only when
// Config.CaptureContent is on, up to Config.MaxContentBytes.
func (c *Call) Output(text string) {
	if text == "" || !c.CaptureContent() {
		return
	}
	c.update(func() {
		if room := c.in.maxContent - len(c.output); room > 0 && !c.outputJSON {
			c.output = append(c.output, truncateString(text, room)...)
		}
	})
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
	if !c.update(func() { c.ended = true }) {
		return
	}
	// From here on no method changes the call (they all check ended).
	d := time.Since(c.start)
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
	switch u := c.usage; {
	case u.TotalTokens > 0:
		return u.TotalTokens
	case u.InputTokens >= 0 && u.OutputTokens >= 0:
		return u.InputTokens + u.OutputTokens
	}
	return -1
}

func (c *Call) endSpan(errorType string) {
	var attrs []attribute.KeyValue
	if c.respModel != "" {
		attrs = append(attrs, semconv.GenAIResponseModelKey.String(c.respModel))
	}
	if c.respID != "" {
		attrs = append(attrs, semconv.GenAIResponseIDKey.String(c.respID))
	}
	if len(c.reasons) > 0 {
		attrs = append(attrs, semconv.GenAIResponseFinishReasonsKey.StringSlice(c.reasons))
	}
	attrs = c.appendUsage(attrs)
	if c.stream {
		if !c.firstChunk.IsZero() {
			attrs = append(attrs, semconv.GenAIResponseTimeToFirstChunkKey.Float64(c.firstChunk.Sub(c.start).Seconds()))
		}
		attrs = append(attrs, StreamChunksKey.Int(c.chunks))
	}
	attrs = append(attrs, AttemptsKey.Int(max(c.attempts, c.retries+1, 1)))
	if c.breakerState != "" {
		attrs = append(attrs, BreakerStateKey.String(c.breakerState))
	}
	if c.fallback != "" {
		attrs = append(attrs, FallbackTargetKey.String(c.fallback))
	}
	if c.backend != "" {
		attrs = append(attrs, BackendKey.String(c.backend))
	}
	if c.hedged {
		attrs = append(attrs, HedgeKey.Bool(true))
		if c.hedgeWinner != "" {
			attrs = append(attrs, HedgeWinnerKey.String(c.hedgeWinner))
		}
	}
	attrs = c.appendQuota(attrs)
	if c.hasMesh {
		attrs = appendMesh(attrs, c.mesh, c.clientTime)
	}
	attrs = c.appendLegacy(attrs)
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
	c.span.SetAttributes(attrs...)
	c.span.End()
}

func (c *Call) appendUsage(attrs []attribute.KeyValue) []attribute.KeyValue {
	if !c.hasUsage {
		return attrs
	}
	if c.usage.InputTokens >= 0 {
		attrs = append(attrs, semconv.GenAIUsageInputTokensKey.Int64(c.usage.InputTokens))
	}
	if c.usage.OutputTokens >= 0 {
		attrs = append(attrs, semconv.GenAIUsageOutputTokensKey.Int64(c.usage.OutputTokens))
	}
	return attrs
}

// appendLegacy adds the llm.* tags existing dashboards read.
func (c *Call) appendLegacy(attrs []attribute.KeyValue) []attribute.KeyValue {
	if !c.in.legacy {
		return attrs
	}
	attrs = append(attrs, LegacyModelKey.String(c.responseModel()))
	if c.hasUsage {
		if c.usage.InputTokens >= 0 {
			attrs = append(attrs, LegacyInputTokensKey.Int64(c.usage.InputTokens))
		}
		if c.usage.OutputTokens >= 0 {
			attrs = append(attrs, LegacyOutputTokensKey.Int64(c.usage.OutputTokens))
		}
		if t := c.total(); t >= 0 {
			attrs = append(attrs, LegacyTotalTokensKey.Int64(t))
		}
	}
	if c.requestID != "" {
		attrs = append(attrs, LegacyRequestIDKey.String(c.requestID))
	}
	return attrs
}

// appendMesh adds a response's mesh signals and the client's time of the exchange.
func appendMesh(attrs []attribute.KeyValue, m Mesh, clientTime time.Duration) []attribute.KeyValue {
	if m.UpstreamServiceTime > 0 {
		attrs = append(attrs,
			MeshUpstreamServiceTimeKey.Float64(m.UpstreamServiceTime.Seconds()),
			MeshClientTimeKey.Float64(clientTime.Seconds()),
			MeshOverheadKey.Float64((clientTime - m.UpstreamServiceTime).Seconds()),
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

// outputMessages returns gen_ai.output.messages: the text set by Content, or
// the captured completion text in the conventions' message schema.
func (c *Call) outputMessages() string {
	if len(c.output) == 0 {
		return ""
	}
	if c.outputJSON {
		return string(c.output)
	}
	type part struct {
		Type    string `json:"type"`
		Content string `json:"content"`
	}
	type message struct {
		Role         string `json:"role"`
		Parts        []part `json:"parts"`
		FinishReason string `json:"finish_reason,omitempty"`
	}
	msg := message{Role: "assistant", Parts: []part{{"text", string(c.output)}}}
	if len(c.reasons) > 0 {
		msg.FinishReason = c.reasons[0]
	}
	return mustJSON([]message{msg})
}

func (c *Call) recordMetrics(d time.Duration, errorType string) {
	ctx, in := c.ctx, c.in
	dur, ttf := in.duration, in.ttfc
	if c.server {
		dur, ttf = in.serverDuration, in.serverTTFT
	}
	base := []attribute.KeyValue{
		semconv.GenAIOperationNameKey.String(c.op),
		semconv.GenAIProviderNameKey.String(c.provider),
	}
	if c.model != "" {
		base = append(base, semconv.GenAIRequestModelKey.String(c.model))
	}
	if c.respModel != "" {
		base = append(base, semconv.GenAIResponseModelKey.String(c.respModel))
	}
	base = appendServer(base, c.addr, c.port)
	with := func(extra ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributes(append(base[:len(base):len(base)], extra...)...)
	}
	if dur.Enabled(ctx) {
		if errorType != "" {
			dur.Record(ctx, d.Seconds(), with(semconv.ErrorTypeKey.String(errorType)))
		} else {
			dur.Record(ctx, d.Seconds(), with())
		}
	}
	// Time to first chunk and token usage are recorded without error.type.
	if c.stream && !c.firstChunk.IsZero() && ttf.Enabled(ctx) {
		ttf.Record(ctx, c.firstChunk.Sub(c.start).Seconds(), with())
	}
	if !c.server && c.hasUsage && in.tokenUsage.Enabled(ctx) {
		if c.usage.InputTokens >= 0 {
			in.tokenUsage.Record(ctx, c.usage.InputTokens, with(semconv.GenAITokenTypeKey.String("input")))
		}
		if c.usage.OutputTokens >= 0 {
			in.tokenUsage.Record(ctx, c.usage.OutputTokens, with(semconv.GenAITokenTypeKey.String("output")))
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("tracing: " + err.Error()) // structs of strings always marshal
	}
	return string(b)
}

// truncateString cuts s to at most n bytes at a UTF-8 character boundary.
func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
