package tracing_test

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/infermesh/infermesh/tracing"
)

// oneCall is the instrumentation of one non-streamed call with one attempt,
// as llmclient does it.
func oneCall(in *tracing.Instrumenter, req tracing.Request, hdr http.Header, body []byte) {
	ctx, call := in.Start(context.Background(), req)
	actx, a := call.StartAttempt(ctx, 1)
	in.InjectHeader(actx, hdr)
	a.HTTPStatus(200)
	a.End(nil, "")
	observeJSON(call, string(body))
	call.End(nil, "")
}

// BenchmarkCallNoop is the per-call cost with no-op providers: 0 allocations.
func BenchmarkCallNoop(b *testing.B) {
	benchCalls(b, tracing.Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()})
}

// BenchmarkCallUnsetGlobal is the per-call cost when the program installed
// no OpenTelemetry SDK at all (Config{} and unset globals).
func BenchmarkCallUnsetGlobal(b *testing.B) { benchCalls(b, tracing.Config{}) }

// benchCalls makes one traced call per iteration through an Instrumenter of
// cfg.
func benchCalls(b *testing.B, cfg tracing.Config) {
	in, err := tracing.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	req, hdr, body := chatRequest(), http.Header{}, []byte(fullResponse)
	b.ReportAllocs()
	for b.Loop() {
		oneCall(in, req, hdr, body)
	}
}

// BenchmarkCallSDK is the per-call cost with the SDK recording everything:
// call span, attempt span, response parse, metrics.
func BenchmarkCallSDK(b *testing.B) {
	benchCallSDK(b, sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter())))
}

func benchCallSDK(b *testing.B, tp *sdktrace.TracerProvider) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) }()
	cpu := cpuTime(b)
	benchCalls(b, tracing.Config{TracerProvider: tp, MeterProvider: mp})
	_ = tp.ForceFlush(context.Background()) // the export of the last spans belongs to the cost
	reportCPU(b, cpu)
}

// BenchmarkSDKFloor is what the SDK alone costs for the spans and metric
// records of BenchmarkCallSDK (same attribute counts, prebuilt attribute
// sets): the part of a recorded call that no instrumentation can avoid.
func BenchmarkSDKFloor(b *testing.B) {
	benchSDKFloor(b, sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter())))
}

func benchSDKFloor(b *testing.B, tp *sdktrace.TracerProvider) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) }()
	tr := tp.Tracer("floor")
	dur, _ := mp.Meter("floor").Float64Histogram("d")
	tok, _ := mp.Meter("floor").Int64Histogram("t")
	start := []attribute.KeyValue{
		attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.provider.name", "openai"),
		attribute.Bool("gen_ai.request.stream", false), attribute.String("gen_ai.request.model", "gpt-4o-mini"),
		attribute.String("server.address", "api.openai.com"), attribute.Int("server.port", 443),
		attribute.String("request.id", "req-1"),
	}
	end := []attribute.KeyValue{
		attribute.String("gen_ai.response.model", "gpt-4o-mini-2024-07-18"), attribute.String("gen_ai.response.id", "chatcmpl-9"),
		attribute.StringSlice("gen_ai.response.finish_reasons", []string{"stop"}),
		attribute.Int("gen_ai.usage.input_tokens", 19), attribute.Int("gen_ai.usage.output_tokens", 10),
		attribute.Int("infermesh.attempts", 1), attribute.String("llm.model", "gpt-4o-mini-2024-07-18"),
		attribute.Int("llm.input_tokens", 19), attribute.Int("llm.output_tokens", 10), attribute.Int("llm.total_tokens", 29),
	}
	set := attribute.NewSet(start...)
	b.ReportAllocs()
	cpu := cpuTime(b)
	for b.Loop() {
		ctx, s := tr.Start(context.Background(), "chat gpt-4o-mini", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(start...))
		_, a := tr.Start(ctx, "infermesh.attempt", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(start[3:6]...))
		a.SetAttributes(start[5])
		a.End()
		s.SetAttributes(end...)
		s.End()
		dur.Record(ctx, 1, metric.WithAttributeSet(set))
		tok.Record(ctx, 19, metric.WithAttributeSet(set))
		tok.Record(ctx, 10, metric.WithAttributeSet(set))
	}
	_ = tp.ForceFlush(context.Background())
	reportCPU(b, cpu)
}

// batchedProvider is a tracer provider as production configures one: a
// batching span processor, exporting from its own goroutine. It blocks
// instead of dropping spans when its queue is full, so that every span of a
// benchmark is exported and paid for.
func batchedProvider() *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter(), sdktrace.WithBlocking()))
}

// cpuTime is the CPU time the process has used (all threads: the exporting
// goroutine and the garbage collector included).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process CPU time since start per op: with a
// goroutine doing part of the work, ns/op alone understates the cost.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkCallSDKBatched is BenchmarkCallSDK with the batching span
// processor (see batchedProvider).
func BenchmarkCallSDKBatched(b *testing.B) { benchCallSDK(b, batchedProvider()) }

// BenchmarkSDKFloorBatched is BenchmarkSDKFloor with the batching span
// processor (see batchedProvider).
func BenchmarkSDKFloorBatched(b *testing.B) { benchSDKFloor(b, batchedProvider()) }
