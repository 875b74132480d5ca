package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/semconv/v1.41.0/genaiconv"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope name of the tracer and meter.
const ScopeName = "github.com/infermesh/infermesh/tracing"

// DefaultMaxContentBytes is the truncation size used when Config.MaxContentBytes is zero.
const DefaultMaxContentBytes = 4096

// Config configures an Instrumenter. The zero value is valid and gives the
// documented defaults.
type Config struct {
	// TracerProvider creates the tracer. Nil means the global provider
	// (otel.GetTracerProvider), which follows a later otel.SetTracerProvider.
	TracerProvider trace.TracerProvider

	// MeterProvider creates the meter. Nil means the global provider
	// (otel.GetMeterProvider), which follows a later otel.SetMeterProvider.
	MeterProvider metric.MeterProvider

	// Propagator injects trace context into outgoing requests and extracts it
	// from incoming ones (Inject, InjectHeader, Extract). Nil means the global
	// propagator (otel.GetTextMapPropagator); install propagation.TraceContext
	// there (or here) for W3C traceparent.
	Propagator propagation.TextMapPropagator

	// DisableLegacyLLMTags leaves out the llm.* tags that existing LLM dashboards
	// read from each call span (llm.model, llm.input_tokens, llm.output_tokens,
	// llm.total_tokens and request.id). They are recorded by default.
	DisableLegacyLLMTags bool

	// CaptureContent records prompts and completions (gen_ai.input.messages
	// and gen_ai.output.messages) on call spans. Off by default: content often
	// holds personal data.
	CaptureContent bool

	// MaxContentBytes truncates each captured content attribute to this many
	// bytes (at a character boundary). Zero means DefaultMaxContentBytes
	// (4096); negative is an error. It applies only with CaptureContent.
	MaxContentBytes int
}

// Bucket boundaries from the GenAI semantic conventions (v1.41.0).
var (
	// tokenBuckets is the advised boundaries of gen_ai.client.token.usage.
	tokenBuckets = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	// durationBuckets is the advised boundaries of gen_ai.client.operation.duration,
	// gen_ai.client.operation.time_to_first_chunk and gen_ai.server.request.duration.
	durationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	// ttftBuckets is the advised boundaries of gen_ai.server.time_to_first_token.
	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0}
)

// Metric names of the infermesh counters.
const (
	MetricRetries            = "infermesh.retries"
	MetricFallbacks          = "infermesh.fallbacks"
	MetricBreakerTransitions = "infermesh.breaker.transitions"
	MetricBudgetRejections   = "infermesh.budget.rejections"
)

// Instrumenter creates call spans and records GenAI metrics. It is safe for
// concurrent use; create one per client and reuse it. A nil *Instrumenter is
// valid and records nothing.
type Instrumenter struct {
	tracer trace.Tracer
	// tracerOff is set when the configured provider is a no-op one: Start
	// then skips the tracer entirely.
	tracerOff bool
	// defaultGlobal is the global provider as it was at New when no global
	// had been installed: while the global is still that provider, every span
	// would be a non-recording one and Start skips the tracer.
	defaultGlobal trace.TracerProvider
	prop          propagation.TextMapPropagator

	legacy     bool
	capture    bool
	maxContent int

	tokenUsage     metric.Int64Histogram
	duration       metric.Float64Histogram
	ttfc           metric.Float64Histogram
	serverDuration metric.Float64Histogram
	serverTTFT     metric.Float64Histogram
	retries        metric.Int64Counter
	fallbacks      metric.Int64Counter
	transitions    metric.Int64Counter
	budget         metric.Int64Counter

	quotaAdmissions metric.Int64Counter
	quotaWait       metric.Float64Histogram
	quotaTokens     metric.Int64Counter
	quotaRemaining  metric.Int64Gauge
}

// New validates c and creates an Instrumenter, with all its metric
// instruments, from it.
func New(c Config) (*Instrumenter, error) {
	if c.MaxContentBytes < 0 {
		return nil, fmt.Errorf("tracing: Config.MaxContentBytes is %d; it must be 0 (default %d) or positive",
			c.MaxContentBytes, DefaultMaxContentBytes)
	}
	in := &Instrumenter{
		legacy:     !c.DisableLegacyLLMTags,
		capture:    c.CaptureContent,
		maxContent: c.MaxContentBytes,
		prop:       c.Propagator,
	}
	if in.maxContent == 0 {
		in.maxContent = DefaultMaxContentBytes
	}
	if in.prop == nil {
		in.prop = otel.GetTextMapPropagator()
	}

	tp := c.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
		if isDefaultGlobal(tp) {
			in.defaultGlobal = tp
		}
	}
	in.tracerOff = isNoopTracerProvider(tp)
	in.tracer = tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))

	mp := c.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	if err := in.instruments(mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))); err != nil {
		return nil, fmt.Errorf("tracing: creating metric instruments: %w", err)
	}
	return in, nil
}

func (in *Instrumenter) instruments(m metric.Meter) error {
	tu, err := genaiconv.NewClientTokenUsage(m, metric.WithExplicitBucketBoundaries(tokenBuckets...))
	if err != nil {
		return err
	}
	du, err := genaiconv.NewClientOperationDuration(m, metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return err
	}
	tf, err := genaiconv.NewClientOperationTimeToFirstChunk(m, metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return err
	}
	sd, err := genaiconv.NewServerRequestDuration(m, metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return err
	}
	st, err := genaiconv.NewServerTimeToFirstToken(m, metric.WithExplicitBucketBoundaries(ttftBuckets...))
	if err != nil {
		return err
	}
	in.tokenUsage, in.duration, in.ttfc = tu.Inst(), du.Inst(), tf.Inst()
	in.serverDuration, in.serverTTFT = sd.Inst(), st.Inst()

	if in.retries, err = m.Int64Counter(MetricRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries of GenAI calls, by reason.")); err != nil {
		return err
	}
	if in.fallbacks, err = m.Int64Counter(MetricFallbacks, metric.WithUnit("{fallback}"),
		metric.WithDescription("GenAI calls handed to a fallback target, by target.")); err != nil {
		return err
	}
	if in.transitions, err = m.Int64Counter(MetricBreakerTransitions, metric.WithUnit("{transition}"),
		metric.WithDescription("Circuit breaker state transitions, by breaker and states.")); err != nil {
		return err
	}
	if in.budget, err = m.Int64Counter(MetricBudgetRejections, metric.WithUnit("{rejection}"),
		metric.WithDescription("Retries refused because the retry budget was exhausted.")); err != nil {
		return err
	}
	return in.quotaInstruments(m)
}

// isNoopTracerProvider reports providers whose spans never record.
func isNoopTracerProvider(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return true
	}
	//lint:ignore SA1019 the deprecated no-op provider is still in use.
	return tp == trace.NewNoopTracerProvider() //nolint:staticcheck // see above
}

// isDefaultGlobal reports whether tp is the placeholder the otel package
// returns before any global provider is installed. Its spans never record
// (unless an external auto-instrumentation agent flips it, which Start then
// does not see), so Start skips it and allocates nothing.
func isDefaultGlobal(tp trace.TracerProvider) bool {
	return fmt.Sprintf("%T", tp) == "*global.tracerProvider"
}

// BreakerTransition counts a circuit breaker state change of the named
// breaker (infermesh.breaker.transitions); use it from the breaker's state
// change hook. States are strings such as "closed", "half-open" and "open".
func (in *Instrumenter) BreakerTransition(name, from, to string) {
	if in == nil {
		return
	}
	ctx := context.Background()
	if !in.transitions.Enabled(ctx) {
		return
	}
	in.transitions.Add(ctx, 1, metric.WithAttributes(
		BreakerNameKey.String(name),
		BreakerFromKey.String(from),
		BreakerToKey.String(to),
	))
}
