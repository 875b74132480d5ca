package tracing_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/infermesh/infermesh/tracing"
)

// printSpans prints each exported span with the attributes named in keys.
func printSpans(exp *tracetest.InMemoryExporter, keys ...string) {
	for _, s := range exp.GetSpans() {
		fmt.Printf("%s [%s]", s.Name, s.SpanKind)
		for _, k := range keys {
			for _, kv := range s.Attributes {
				if string(kv.Key) == k {
					fmt.Printf(" %s=%s", k, kv.Value.String())
				}
			}
		}
		for _, e := range s.Events {
			fmt.Printf(" event:%s", e.Name)
			for _, kv := range e.Attributes {
				fmt.Printf(" %s=%s", kv.Key, kv.Value.String())
			}
		}
		if s.Status.Description != "" {
			fmt.Printf(" status=%s", s.Status.Description)
		}
		fmt.Println()
	}
}

// A non-streamed call with one attempt, as an HTTP client wrapper traces it.
func Example() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	in, err := tracing.New(tracing.Config{TracerProvider: tp, MeterProvider: mp, Propagator: propagation.TraceContext{}})
	if err != nil {
		panic(err)
	}

	ctx, call := in.Start(context.Background(), tracing.Request{
		Operation: "chat", Provider: "openai", Model: "gpt-4o-mini",
		ServerAddress: "api.openai.com", ServerPort: 443,
	})
	actx, attempt := call.StartAttempt(ctx, 1)
	header := http.Header{"Authorization": {"Bearer sk-never-recorded"}}
	in.InjectHeader(actx, header) // the attempt's span continues on the server
	fmt.Println("traceparent length:", len(header.Get("traceparent")))
	attempt.HTTPStatus(200)
	attempt.End(nil, "")

	// What the response said, as the caller read it from the body.
	call.Response("gpt-4o-mini-2024-07-18", "chatcmpl-1", "stop")
	call.Usage(tracing.Usage{InputTokens: 9, OutputTokens: 2, TotalTokens: 11})
	call.End(nil, "")

	printSpans(exp, "gen_ai.response.model", "gen_ai.response.finish_reasons",
		"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "llm.total_tokens", "http.response.status_code")

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if h, ok := m.Data.(metricdata.Histogram[int64]); ok {
			for _, dp := range h.DataPoints {
				typ, _ := dp.Attributes.Value("gen_ai.token.type")
				fmt.Printf("%s %s=%s sum=%d\n", m.Name, "gen_ai.token.type", typ.String(), dp.Sum)
			}
		}
	}
	// Unordered output:
	// traceparent length: 55
	// infermesh.attempt [client] http.response.status_code=200
	// chat gpt-4o-mini [client] gen_ai.response.model=gpt-4o-mini-2024-07-18 gen_ai.response.finish_reasons=["stop"] gen_ai.usage.input_tokens=9 gen_ai.usage.output_tokens=2 llm.total_tokens=11
	// gen_ai.client.token.usage gen_ai.token.type=input sum=9
	// gen_ai.client.token.usage gen_ai.token.type=output sum=2
}

// A streamed call: the caller marks each chunk that carries output (the
// first one is the time to first chunk) and records the usage of the final
// usage-only chunk when it comes.
func ExampleCall_Chunk() {
	exp := tracetest.NewInMemoryExporter()
	in, _ := tracing.New(tracing.Config{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))})
	_, call := in.Start(context.Background(), tracing.Request{Model: "gpt-4o-mini", Stream: true})

	for _, text := range []string{"Hel", "lo"} {
		call.FirstChunk(time.Now()) // kept only the first time
		call.Chunk()
		call.Output(text) // recorded only with CaptureContent
	}
	call.Response("gpt-4o-mini", "c1", "stop")
	call.Usage(tracing.Usage{InputTokens: 5, OutputTokens: 2, TotalTokens: 7})
	call.End(nil, "")
	printSpans(exp, "infermesh.stream.chunks", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
	// Output:
	// chat gpt-4o-mini [client] infermesh.stream.chunks=2 gen_ai.usage.input_tokens=5 gen_ai.usage.output_tokens=2
}

// A call retried once, then served by an in-process fallback: each attempt
// and the fallback are children of the call span.
func ExampleCall_StartFallback() {
	exp := tracetest.NewInMemoryExporter()
	in, _ := tracing.New(tracing.Config{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))})
	ctx, call := in.Start(context.Background(), tracing.Request{Model: "gpt-4o"})

	_, a1 := call.StartAttempt(ctx, 1)
	a1.Mesh(tracing.Mesh{Overloaded: true}) // the sidecar shed it
	a1.End(errors.New("503"), "overloaded")
	call.Retry(1, 500*time.Millisecond, "overloaded")
	_, a2 := call.StartAttempt(ctx, 2)
	a2.End(errors.New("503"), "overloaded")

	_, fb := call.StartFallback(ctx, tracing.FallbackTarget{Name: "canned-reply", Internal: true})
	fb.End(nil, "")
	call.End(nil, "")
	printSpans(exp, "infermesh.attempt", "infermesh.attempts", "infermesh.fallback.target", "infermesh.mesh.overloaded")
	// Output:
	// infermesh.attempt [client] infermesh.attempt=1 infermesh.mesh.overloaded=true status=overloaded
	// infermesh.attempt [client] infermesh.attempt=2 status=overloaded
	// chat gpt-4o [internal] infermesh.fallback.target=canned-reply
	// chat gpt-4o [client] infermesh.attempts=2 infermesh.fallback.target=canned-reply infermesh.mesh.overloaded=true event:infermesh.retry infermesh.attempt=1 infermesh.retry.wait=0.5 infermesh.retry.reason=overloaded event:infermesh.fallback infermesh.fallback.target=canned-reply
}

// A zero Config gives the defaults: global providers, legacy tags on,
// content capture off.
func ExampleConfig() {
	in, err := tracing.New(tracing.Config{})
	fmt.Println(in != nil, err)
	_, call := in.Start(context.Background(), tracing.Request{Model: "m"})
	fmt.Println("call recorded:", call != nil) // no SDK installed: nothing to record
	_, err = tracing.New(tracing.Config{MaxContentBytes: -1})
	fmt.Println(err)
	fmt.Println("legacy llm.* tags:", !tracing.Config{}.DisableLegacyLLMTags)
	// Output:
	// true <nil>
	// call recorded: false
	// tracing: Config.MaxContentBytes is -1; it must be 0 (default 4096) or positive
	// legacy llm.* tags: true
}
