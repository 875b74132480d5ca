package llmclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
	"github.com/infermesh/infermesh/tracing"
)

// telemetry is an SDK pipeline that keeps everything in memory.
type telemetry struct {
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTelemetry() *telemetry {
	t := &telemetry{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	t.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(t.spans))
	t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(t.reader))
	return t
}

func (t *telemetry) config() tracing.Config {
	return tracing.Config{TracerProvider: t.tp, MeterProvider: t.mp}
}

// callSpan returns the one logical call span (the span that is not an attempt).
func (t *telemetry) callSpan(tb testing.TB) tracetest.SpanStub {
	tb.Helper()
	var out []tracetest.SpanStub
	for _, s := range t.spans.GetSpans() {
		if s.Name != tracing.AttemptSpanName && s.Parent.SpanID() == (trace.SpanID{}) {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		tb.Fatalf("%d call spans, want 1: %v", len(out), names(t.spans.GetSpans()))
	}
	return out[0]
}

func names(spans tracetest.SpanStubs) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func wantAttr(t *testing.T, m map[attribute.Key]attribute.Value, key string, want any) {
	t.Helper()
	v, ok := m[attribute.Key(key)]
	if !ok {
		t.Errorf("attribute %s missing", key)
		return
	}
	if got := v.AsInterface(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("attribute %s = %v, want %v", key, got, want)
	}
}

func TestTracingNonStreamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry()
		e, done := newEnv(t, llmclient.Config{Tracing: tel.config()}, llmtest.WithChunks(5, "tok "))
		defer done()
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
			t.Fatal(err)
		}
		s := tel.callSpan(t)
		if s.Name != "chat gpt-4o-mini" || s.SpanKind != trace.SpanKindClient {
			t.Errorf("span %q kind %v", s.Name, s.SpanKind)
		}
		in := int64(llmtest.ChatPromptTokens("hello there"))
		m := attrs(s)
		wantAttr(t, m, "gen_ai.operation.name", "chat")
		wantAttr(t, m, "gen_ai.provider.name", "openai")
		wantAttr(t, m, "gen_ai.request.model", "gpt-4o-mini")
		wantAttr(t, m, "gen_ai.response.model", "gpt-4o-mini")
		wantAttr(t, m, "gen_ai.response.id", "chatcmpl-1")
		wantAttr(t, m, "gen_ai.response.finish_reasons", []string{"stop"})
		wantAttr(t, m, "gen_ai.usage.input_tokens", in)
		wantAttr(t, m, "gen_ai.usage.output_tokens", 5)
		wantAttr(t, m, "gen_ai.request.stream", false)
		wantAttr(t, m, "server.address", "llmtest.invalid")
		wantAttr(t, m, "server.port", 80)
		wantAttr(t, m, "llm.model", "gpt-4o-mini")
		wantAttr(t, m, "llm.input_tokens", in)
		wantAttr(t, m, "llm.output_tokens", 5)
		wantAttr(t, m, "llm.total_tokens", in+5)
		wantAttr(t, m, "infermesh.attempts", 1)
		if _, ok := m["error.type"]; ok || s.Status.Code == codes.Error {
			t.Errorf("successful call marked as failed: %v %v", m["error.type"], s.Status)
		}
		for _, k := range []string{"gen_ai.input.messages", "gen_ai.output.messages"} {
			if _, ok := m[attribute.Key(k)]; ok {
				t.Errorf("%s recorded without CaptureContent", k)
			}
		}

		var rm metricdata.ResourceMetrics
		if err := tel.reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, sm := range rm.ScopeMetrics {
			for _, mt := range sm.Metrics {
				found[mt.Name] = true
				if mt.Name == "gen_ai.client.token.usage" {
					h := mt.Data.(metricdata.Histogram[int64])
					var sum int64
					for _, dp := range h.DataPoints {
						sum += dp.Sum
					}
					if sum != in+5 {
						t.Errorf("token usage histogram sums to %d, want %d", sum, in+5)
					}
				}
			}
		}
		for _, name := range []string{"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} {
			if !found[name] {
				t.Errorf("metric %s not recorded; have %v", name, found)
			}
		}
	})
}

func TestTracingStreamWithUsage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry()
		e, done := newEnv(t, llmclient.Config{Tracing: tel.config()},
			llmtest.WithChunks(4, "x "), llmtest.WithLatency(llmtest.Fixed(250*time.Millisecond)))
		defer done()
		res := readStream(context.Background(), e.client, chatReq(true)) // usage not asked for
		if res.err != nil || res.openErr != nil {
			t.Fatal(res.err, res.openErr)
		}
		m := attrs(tel.callSpan(t))
		wantAttr(t, m, "gen_ai.request.stream", true)
		wantAttr(t, m, "gen_ai.usage.output_tokens", 4)
		wantAttr(t, m, "gen_ai.usage.input_tokens", llmtest.ChatPromptTokens("hello there"))
		ttfc, ok := m["gen_ai.response.time_to_first_chunk"]
		if !ok || ttfc.AsFloat64() < 0.25 || ttfc.AsFloat64() > 0.3 {
			t.Errorf("time to first chunk %v, want about the server's 250 ms latency", ttfc.AsInterface())
		}
	})
}

func TestTracingRetriedCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry()
		e, done := newEnv(t, llmclient.Config{Tracing: tel.config()})
		defer done()
		e.srv.Enqueue(llmtest.Status(503))
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
			t.Fatal(err)
		}
		s := tel.callSpan(t)
		wantAttr(t, attrs(s), "infermesh.attempts", 2)
		var retries int
		for _, ev := range s.Events {
			if ev.Name == "infermesh.retry" {
				retries++
				ea := map[attribute.Key]attribute.Value{}
				for _, kv := range ev.Attributes {
					ea[kv.Key] = kv.Value
				}
				wantAttr(t, ea, "infermesh.retry.reason", "unavailable")
				if _, ok := ea["infermesh.retry.wait"]; !ok {
					t.Errorf("retry event without its wait: %v", ev.Attributes)
				}
			}
		}
		if retries != 1 {
			t.Errorf("%d retry events, want 1", retries)
		}
		var attempts []tracetest.SpanStub
		for _, sp := range tel.spans.GetSpans() {
			if sp.Name == tracing.AttemptSpanName {
				attempts = append(attempts, sp)
			}
		}
		if len(attempts) != 2 {
			t.Fatalf("%d attempt spans, want 2", len(attempts))
		}
		// Every attempt is a child of the call, and its traceparent went out on the wire.
		reqs := e.srv.Requests()
		for i, a := range attempts {
			if a.Parent.SpanID() != s.SpanContext.SpanID() {
				t.Errorf("attempt %d is not a child of the call span", i)
			}
			tp := reqs[i].Header.Get("Traceparent")
			if !strings.Contains(tp, s.SpanContext.TraceID().String()) || !strings.Contains(tp, a.SpanContext.SpanID().String()) {
				t.Errorf("request %d traceparent %q does not name attempt %s of trace %s", i, tp, a.SpanContext.SpanID(), s.SpanContext.TraceID())
			}
		}
	})
}

func TestTracingFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry()
		cfg := llmclient.Config{Tracing: tel.config(), Fallback: fallback.Config{Targets: []fallback.Target{fallback.Static("static", "later")}}}
		e, done := newEnv(t, cfg)
		defer done()
		e.srv.SetRules(llmtest.Rule{Fault: llmtest.EnvoyNoHealthyUpstream()})
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
			t.Fatal(err)
		}
		s := tel.callSpan(t)
		wantAttr(t, attrs(s), "infermesh.fallback.target", "static")
		var internal bool
		for _, sp := range tel.spans.GetSpans() {
			if sp.Parent.SpanID() == s.SpanContext.SpanID() && sp.SpanKind == trace.SpanKindInternal {
				internal = true
			}
		}
		if !internal {
			t.Errorf("no INTERNAL span for the in-process fallback: %v", names(tel.spans.GetSpans()))
		}
		if s.Status.Code == codes.Error {
			t.Errorf("a call served by the fallback is marked failed")
		}
	})
}

func TestTracingFailedCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry()
		e, done := newEnv(t, llmclient.Config{Tracing: tel.config()})
		defer done()
		e.srv.SetRules(llmtest.Rule{Fault: llmtest.Status(429)})
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err == nil {
			t.Fatal("call succeeded")
		}
		s := tel.callSpan(t)
		wantAttr(t, attrs(s), "error.type", "rate_limited")
		if s.Status.Code != codes.Error {
			t.Errorf("status %v, want Error", s.Status)
		}
	})
}

// TestSecretNowhere sends a known key through failing calls and looks for it in every
// span, event, metric and returned error.
func TestSecretNowhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry()
		cfg := llmclient.Config{Tracing: tel.config()}
		e, done := newEnv(t, cfg)
		defer done()
		f := llmtest.Status(401)
		f.Message = "Incorrect API key provided: " + secretKey
		e.srv.Enqueue(f)
		_, err1 := e.client.CreateChatCompletion(context.Background(), chatReq(false))
		e.srv.SetRules(llmtest.Rule{Fault: llmtest.Fault{Kind: llmtest.KindErrorEvent, Message: "key " + secretKey + " revoked"}})
		_, err2 := e.client.CreateChatCompletion(context.Background(), chatReq(false))
		res := readStream(context.Background(), e.client, chatReq(true))
		if err1 == nil || err2 == nil {
			t.Fatalf("failing calls succeeded: %v %v", err1, err2)
		}
		for i, err := range []error{err1, err2, res.err, res.openErr} {
			if err != nil && strings.Contains(err.Error(), secretKey) {
				t.Errorf("error %d leaks the key: %v", i, err)
			}
		}
		dump, _ := json.Marshal(tel.spans.GetSpans())
		var rm metricdata.ResourceMetrics
		_ = tel.reader.Collect(context.Background(), &rm)
		mdump, _ := json.Marshal(rm)
		for what, d := range map[string][]byte{"spans": dump, "metrics": mdump} {
			if strings.Contains(string(d), secretKey) || strings.Contains(string(d), secretKey[len(secretKey)-8:]) {
				t.Errorf("the API key appears in the exported %s", what)
			}
		}
		if len(tel.spans.GetSpans()) < 3 {
			t.Errorf("only %d spans exported", len(tel.spans.GetSpans()))
		}
	})
}

// TestTracingFallbackEndpointContinuesTrace: a request to a fallback endpoint carries
// the call's trace context, under the fallback's own span.
func TestTracingFallbackEndpointContinuesTrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry()
		local := llmtest.NewUnstartedServer()
		defer local.Close()
		cfg := fallbackConfig(t, local)
		cfg.Tracing = tel.config()
		e, done := newEnv(t, cfg)
		defer done()
		e.srv.SetRules(llmtest.Rule{Fault: llmtest.EnvoyNoHealthyUpstream()})
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
			t.Fatal(err)
		}
		call := tel.callSpan(t)
		var fb tracetest.SpanStub
		for _, s := range tel.spans.GetSpans() {
			if s.Parent.SpanID() == call.SpanContext.SpanID() && s.SpanKind == trace.SpanKindClient && s.Name != tracing.AttemptSpanName {
				fb = s
			}
		}
		if !fb.SpanContext.IsValid() {
			t.Fatalf("no CLIENT span for the fallback endpoint: %v", names(tel.spans.GetSpans()))
		}
		tp := local.Requests()[0].Header.Get("Traceparent")
		if !strings.Contains(tp, call.SpanContext.TraceID().String()) || !strings.Contains(tp, fb.SpanContext.SpanID().String()) {
			t.Errorf("fallback traceparent %q, want trace %s span %s", tp, call.SpanContext.TraceID(), fb.SpanContext.SpanID())
		}
	})
}
