package tracing_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/internal/sse"
	"github.com/infermesh/infermesh/tracing"
)

var durationBounds = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
var tokenBounds = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}

const fullResponse = `{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18",
 "choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],
 "usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}`

func chatRequest() tracing.Request {
	return tracing.Request{
		Operation: "chat", Provider: "openai", Model: "gpt-4o-mini",
		ServerAddress: "api.openai.com", ServerPort: 443, RequestID: "req-1",
	}
}

func TestNonStreamedCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{})
	ctx, call := h.in.Start(context.Background(), chatRequest())
	if call == nil {
		t.Fatal("nil call with an SDK provider")
	}
	actx, a := call.StartAttempt(ctx, 1)
	a.HTTPStatus(200)
	a.End(nil, "")
	if tracing.CallFromContext(actx) != call {
		t.Fatal("CallFromContext does not find the call through the attempt context")
	}
	observeJSON(call, fullResponse)
	call.End(nil, "")
	call.End(errors.New("twice"), "x") // ignored

	s := h.span(t, "chat gpt-4o-mini")
	if s.SpanKind != trace.SpanKindClient || s.Status.Code != codes.Unset {
		t.Fatalf("kind %v status %v", s.SpanKind, s.Status)
	}
	wantAttrs(t, "call span", s.Attributes, map[string]string{
		"gen_ai.operation.name":          "chat",
		"gen_ai.provider.name":           "openai",
		"gen_ai.request.model":           "gpt-4o-mini",
		"gen_ai.request.stream":          "false",
		"server.address":                 "api.openai.com",
		"server.port":                    "443",
		"gen_ai.response.model":          "gpt-4o-mini-2024-07-18",
		"gen_ai.response.id":             "chatcmpl-9",
		"gen_ai.response.finish_reasons": `["stop"]`,
		"gen_ai.usage.input_tokens":      "19",
		"gen_ai.usage.output_tokens":     "10",
		"infermesh.attempts":             "1",
		"llm.model":                      "gpt-4o-mini-2024-07-18",
		"llm.input_tokens":               "19",
		"llm.output_tokens":              "10",
		"llm.total_tokens":               "29",
		"request.id":                     "req-1",
	})
	as := h.span(t, tracing.AttemptSpanName)
	if as.Parent.SpanID() != s.SpanContext.SpanID() || as.SpanContext.TraceID() != s.SpanContext.TraceID() {
		t.Fatal("attempt span is not a child of the call span")
	}
	wantAttrs(t, "attempt span", as.Attributes, map[string]string{
		"infermesh.attempt": "1", "server.address": "api.openai.com", "server.port": "443",
		"http.response.status_code": "200",
	})

	ms := h.metrics(t)
	base := map[string]string{
		"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
		"gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
		"server.address": "api.openai.com", "server.port": "443",
	}
	dur := histPoints(t, ms["gen_ai.client.operation.duration"])
	if len(dur) != 1 || dur[0].count != 1 || fmt.Sprint(dur[0].bounds) != fmt.Sprint(durationBounds) {
		t.Fatalf("duration points %+v", dur)
	}
	wantMap(t, "duration metric", dur[0].attrs, base)
	if u := ms["gen_ai.client.operation.duration"].Unit; u != "s" {
		t.Fatalf("duration unit %q", u)
	}
	tok := histPoints(t, ms["gen_ai.client.token.usage"])
	if len(tok) != 2 || ms["gen_ai.client.token.usage"].Unit != "{token}" {
		t.Fatalf("token points %+v", tok)
	}
	for _, p := range tok {
		want := map[string]float64{"input": 19, "output": 10}[p.attrs["gen_ai.token.type"]]
		if p.sum != want || p.count != 1 || fmt.Sprint(p.bounds) != fmt.Sprint(tokenBounds) {
			t.Fatalf("token point %+v", p)
		}
		w := copyMap(base)
		w["gen_ai.token.type"] = p.attrs["gen_ai.token.type"]
		wantMap(t, "token metric", p.attrs, w)
	}
	if _, ok := ms["gen_ai.client.operation.time_to_first_chunk"]; ok {
		t.Fatal("time to first chunk recorded for a non-streamed call")
	}
}

const sseStream = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
	"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
	": keep-alive\n\n" +
	"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\\"you\\\"\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
	"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
	"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n" +
	"data: [DONE]\n\n"

// feed plays an SSE stream into call the way llmclient's stream reader does.
func feed(t testing.TB, call *tracing.Call, stream string) {
	t.Helper()
	s := sse.NewScanner(strings.NewReader(stream), sse.Options{})
	for s.Next() {
		ev, err := llmwire.ParseEvent(llmwire.KindChat, s.Event().Name, s.Event().Data)
		if err != nil {
			t.Fatal(err)
		}
		observeEvent(call, ev)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
}

// observeEvent records one parsed stream event as llmclient does.
func observeEvent(call *tracing.Call, ev llmwire.Event) {
	if ev.Output {
		call.FirstChunk(time.Now()) // the first one is kept
		call.Chunk()
	}
	call.Response(ev.Model, ev.ID, ev.FinishReasons...)
	if ev.Usage.Has {
		call.Usage(tracing.Usage{InputTokens: ev.Usage.InputTokens, OutputTokens: ev.Usage.OutputTokens, TotalTokens: ev.Usage.Total})
	}
	call.Output(ev.Text)
}

// observeJSON records a whole response body as llmclient does.
func observeJSON(call *tracing.Call, body string) {
	b, err := llmwire.ParseBody([]byte(body), true)
	if err != nil {
		return
	}
	call.Response(b.Model, b.ID, b.FinishReasons...)
	if b.Usage.Has {
		call.Usage(tracing.Usage{InputTokens: b.Usage.InputTokens, OutputTokens: b.Usage.OutputTokens, TotalTokens: b.Usage.Total})
	}
	call.Output(b.Text)
}

func TestStreamedCallWithUsage(t *testing.T) {
	t.Parallel()
	// In a synctest bubble the clock is fake: the first content chunk comes
	// exactly 2 ms after the call starts.
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, tracing.Config{})
		req := chatRequest()
		req.Stream = true
		req.RequestID = ""
		ctx, call := h.in.Start(context.Background(), req)
		_, a := call.StartAttempt(ctx, 1)
		a.End(nil, "")
		time.Sleep(2 * time.Millisecond)
		feed(t, call, sseStream)
		time.Sleep(time.Millisecond)
		call.End(nil, "")

		s := h.span(t, "chat gpt-4o-mini")
		wantAttrs(t, "stream span", s.Attributes, map[string]string{
			"gen_ai.operation.name":               "chat",
			"gen_ai.provider.name":                "openai",
			"gen_ai.request.model":                "gpt-4o-mini",
			"gen_ai.request.stream":               "true",
			"server.address":                      "api.openai.com",
			"server.port":                         "443",
			"gen_ai.response.model":               "gpt-4o-mini-2024-07-18",
			"gen_ai.response.id":                  "c1",
			"gen_ai.response.finish_reasons":      `["stop"]`,
			"gen_ai.usage.input_tokens":           "7",
			"gen_ai.usage.output_tokens":          "3",
			"gen_ai.response.time_to_first_chunk": "0.002000",
			"infermesh.stream.chunks":             "2", // the chunks that carry output
			"infermesh.attempts":                  "1",
			"llm.model":                           "gpt-4o-mini-2024-07-18",
			"llm.input_tokens":                    "7",
			"llm.output_tokens":                   "3",
			"llm.total_tokens":                    "10",
		})
		if d := s.EndTime.Sub(s.StartTime); d != 3*time.Millisecond {
			t.Fatalf("span duration %v", d)
		}
		ms := h.metrics(t)
		p := histPoints(t, ms["gen_ai.client.operation.time_to_first_chunk"])
		if len(p) != 1 || p[0].count != 1 || fmt.Sprint(p[0].bounds) != fmt.Sprint(durationBounds) || p[0].sum != 0.002 {
			t.Fatalf("ttfc points %+v", p)
		}
		if d := histPoints(t, ms["gen_ai.client.operation.duration"]); len(d) != 1 || d[0].sum != 0.003 {
			t.Fatalf("duration points %+v", d)
		}
		if tok := histPoints(t, ms["gen_ai.client.token.usage"]); len(tok) != 2 {
			t.Fatalf("token points %+v", tok)
		}
	})
}

func TestStreamWithoutUsageReportsNone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{})
	_, call := h.in.Start(context.Background(), tracing.Request{Model: "m", Stream: true})
	// The stream without its usage chunk.
	noUsage := strings.Replace(sseStream, "\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}", "\"choices\":[]", 1)
	feed(t, call, noUsage)
	call.End(nil, "")
	s := h.span(t, "chat m")
	for _, k := range []string{"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "llm.input_tokens", "llm.output_tokens", "llm.total_tokens"} {
		if _, ok := attrMap(s.Attributes)[k]; ok {
			t.Fatalf("%s recorded without usage", k)
		}
	}
	if _, ok := h.metrics(t)["gen_ai.client.token.usage"]; ok {
		t.Fatal("token usage metric recorded without usage")
	}
}

func TestRetriedCall(t *testing.T) {
	t.Parallel()
	// In a synctest bubble the client time the mesh attributes measure is exact.
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, tracing.Config{})
		ctx, call := h.in.Start(context.Background(), chatRequest())

		a1ctx, a1 := call.StartAttempt(ctx, 1)
		hdr1 := http.Header{}
		h.in.InjectHeader(a1ctx, hdr1)
		a1.HTTPStatus(429)
		time.Sleep(55 * time.Millisecond) // the client's time of the exchange, measured
		a1.Mesh(tracing.Mesh{UpstreamServiceTime: 40 * time.Millisecond, AttemptCount: 2, Overloaded: true})
		a1.End(errors.New("429 Too Many Requests"), "rate_limited")
		call.Retry(1, 2*time.Second, "rate_limited")
		call.Breaker("closed")

		a2ctx, a2 := call.StartAttempt(ctx, 2)
		hdr2 := http.Header{}
		h.in.InjectHeader(a2ctx, hdr2)
		a2.HTTPStatus(200)
		a2.End(nil, "")
		observeJSON(call, fullResponse)
		call.End(nil, "")

		s := h.span(t, "chat gpt-4o-mini")
		attrs := attrMap(s.Attributes)
		if attrs["infermesh.attempts"] != "2" || attrs["infermesh.breaker.state"] != "closed" {
			t.Fatalf("attempts %q breaker %q", attrs["infermesh.attempts"], attrs["infermesh.breaker.state"])
		}
		// The call span keeps the last mesh signals it saw (attempt 1's here).
		for k, want := range map[string]string{
			"infermesh.mesh.upstream_service_time": "0.040000", "infermesh.mesh.client_time": "0.055000",
			"infermesh.mesh.overhead": "0.015000", "infermesh.mesh.overloaded": "true", "infermesh.mesh.attempt_count": "2",
		} {
			if attrs[k] != want {
				t.Fatalf("%s = %q, want %q", k, attrs[k], want)
			}
		}
		if len(s.Events) != 1 || s.Events[0].Name != tracing.RetryEvent {
			t.Fatalf("events %+v", s.Events)
		}
		wantAttrs(t, "retry event", s.Events[0].Attributes, map[string]string{
			"infermesh.attempt": "1", "infermesh.retry.wait": "2.000000", "infermesh.retry.reason": "rate_limited",
		})

		var attempts []string
		for _, sp := range h.spans.GetSpans() {
			if sp.Name != tracing.AttemptSpanName {
				continue
			}
			if sp.Parent.SpanID() != s.SpanContext.SpanID() {
				t.Fatal("attempt span is not a child of the call span")
			}
			a := attrMap(sp.Attributes)
			attempts = append(attempts, a["infermesh.attempt"])
			switch a["infermesh.attempt"] {
			case "1":
				if sp.Status.Code != codes.Error || sp.Status.Description != "rate_limited" ||
					a["error.type"] != "rate_limited" || a["http.response.status_code"] != "429" ||
					a["infermesh.mesh.overhead"] != "0.015000" {
					t.Fatalf("attempt 1: status %+v attrs %v", sp.Status, a)
				}
				if want := fmt.Sprintf("00-%s-%s-01", sp.SpanContext.TraceID(), sp.SpanContext.SpanID()); hdr1.Get("traceparent") != want {
					t.Fatalf("attempt 1 traceparent %q, want %q", hdr1.Get("traceparent"), want)
				}
			case "2":
				if sp.Status.Code != codes.Unset || a["http.response.status_code"] != "200" {
					t.Fatalf("attempt 2: status %+v attrs %v", sp.Status, a)
				}
				if want := fmt.Sprintf("00-%s-%s-01", sp.SpanContext.TraceID(), sp.SpanContext.SpanID()); hdr2.Get("traceparent") != want {
					t.Fatalf("attempt 2 traceparent %q, want %q", hdr2.Get("traceparent"), want)
				}
			}
		}
		if fmt.Sprint(attempts) != "[1 2]" {
			t.Fatalf("attempt spans %v", attempts)
		}
		retries := sumPoints(t, h.metrics(t)[tracing.MetricRetries])
		want := fmt.Sprint(map[string]string{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
			"server.address": "api.openai.com", "infermesh.retry.reason": "rate_limited"})
		if len(retries) != 1 || retries[want] != 1 {
			t.Fatalf("retries %v", retries)
		}
	})
}

func TestFallbackCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{})
	ctx, call := h.in.Start(context.Background(), chatRequest())
	_, a := call.StartAttempt(ctx, 1)
	a.End(errors.New("no healthy upstream"), "unavailable")
	fctx, fb := call.StartFallback(ctx, tracing.FallbackTarget{Name: "local-llama", Internal: true, Model: "llama3"})
	if trace.SpanFromContext(fctx).SpanContext().SpanID() == trace.SpanFromContext(ctx).SpanContext().SpanID() {
		t.Fatal("fallback context does not carry the fallback span")
	}
	fb.End(nil, "")
	call.Response("llama3", "local-1", "stop")
	call.End(nil, "")

	s := h.span(t, "chat gpt-4o-mini")
	a2 := attrMap(s.Attributes)
	if a2["infermesh.fallback.target"] != "local-llama" || a2["gen_ai.response.model"] != "llama3" || s.Status.Code != codes.Unset {
		t.Fatalf("call span %v status %v", a2, s.Status)
	}
	if len(s.Events) != 1 || s.Events[0].Name != tracing.FallbackEvent {
		t.Fatalf("events %+v", s.Events)
	}
	wantAttrs(t, "fallback event", s.Events[0].Attributes, map[string]string{"infermesh.fallback.target": "local-llama"})
	f := h.span(t, "chat llama3")
	if f.SpanKind != trace.SpanKindInternal || f.Parent.SpanID() != s.SpanContext.SpanID() {
		t.Fatalf("fallback span kind %v parent %v", f.SpanKind, f.Parent.SpanID())
	}
	wantAttrs(t, "fallback span", f.Attributes, map[string]string{
		"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
		"gen_ai.request.model": "llama3", "infermesh.fallback.target": "local-llama",
	})
	fbs := sumPoints(t, h.metrics(t)[tracing.MetricFallbacks])
	want := fmt.Sprint(map[string]string{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
		"infermesh.fallback.target": "local-llama"})
	if fbs[want] != 1 {
		t.Fatalf("fallbacks %v", fbs)
	}
}

func TestInternalCallKind(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{})
	_, call := h.in.Start(context.Background(), tracing.Request{Model: "cache", Internal: true, Server: true})
	call.End(nil, "")
	if s := h.span(t, "chat cache"); s.SpanKind != trace.SpanKindInternal {
		t.Fatalf("kind %v", s.SpanKind)
	}
}

func TestFailedCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		err       error
		errorType string
		want      string
	}{
		{"explicit class", errors.New("boom"), "rate_limited", "rate_limited"},
		{"unknown error", errors.New("boom"), "", "_OTHER"},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), "", "timeout"},
		{"canceled", context.Canceled, "", "canceled"},
		{"error event in a 200 stream", nil, "overloaded", "overloaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tracing.Config{})
			_, call := h.in.Start(context.Background(), tracing.Request{Model: "gpt-4o", ServerAddress: "h"})
			call.End(tt.err, tt.errorType)
			s := h.span(t, "chat gpt-4o")
			if s.Status.Code != codes.Error || s.Status.Description != tt.want {
				t.Fatalf("status %+v", s.Status)
			}
			wantAttrs(t, "failed span", s.Attributes, map[string]string{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
				"gen_ai.request.stream": "false", "server.address": "h", "infermesh.attempts": "1",
				"llm.model": "gpt-4o", "error.type": tt.want,
			})
			if len(s.Events) != 0 {
				t.Fatalf("events %+v", s.Events)
			}
			dur := histPoints(t, h.metrics(t)["gen_ai.client.operation.duration"])
			if len(dur) != 1 || dur[0].attrs["error.type"] != tt.want {
				t.Fatalf("duration points %+v", dur)
			}
		})
	}
}

func TestLegacyTagsOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{DisableLegacyLLMTags: true})
	_, call := h.in.Start(context.Background(), chatRequest())
	observeJSON(call, fullResponse)
	call.End(nil, "")
	for k := range attrMap(h.span(t, "chat gpt-4o-mini").Attributes) {
		if strings.HasPrefix(k, "llm.") || k == "request.id" {
			t.Fatalf("legacy tag %s recorded with DisableLegacyLLMTags", k)
		}
	}
	h = newHarness(t, tracing.Config{})
	_, call = h.in.Start(context.Background(), chatRequest())
	call.End(nil, "")
	if attrMap(h.span(t, "chat gpt-4o-mini").Attributes)["llm.model"] != "gpt-4o-mini" {
		t.Fatal("llm.model missing by default")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	if _, err := tracing.New(tracing.Config{MaxContentBytes: -1}); err == nil || !strings.Contains(err.Error(), "MaxContentBytes is -1") {
		t.Fatalf("err = %v", err)
	}
	if _, err := tracing.New(tracing.Config{}); err != nil {
		t.Fatal(err)
	}
}

func TestCaptureContent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{CaptureContent: true, MaxContentBytes: 24})
	_, call := h.in.Start(context.Background(), tracing.Request{Model: "m", Stream: true})
	if !call.CaptureContent() {
		t.Fatal("CaptureContent false")
	}
	call.Content(`[{"role":"user","parts":[{"type":"text","content":"héllo wörld, how are you"}]}]`, "")
	feed(t, call, sseStream)
	call.End(nil, "")
	a := attrMap(h.span(t, "chat m").Attributes)
	if got := a["gen_ai.input.messages"]; got != `[{"role":"user","parts":` {
		t.Fatalf("input messages %q", got)
	}
	want := `[{"role":"assistant","parts":[{"type":"text","content":"Hello \"you\""}],"finish_reason":"stop"}]`
	if got := a["gen_ai.output.messages"]; got != want {
		t.Fatalf("output messages\n got %s\nwant %s", got, want)
	}

	// Off by default.
	h = newHarness(t, tracing.Config{})
	_, call = h.in.Start(context.Background(), tracing.Request{Model: "m", Stream: true})
	if call.CaptureContent() {
		t.Fatal("CaptureContent true by default")
	}
	call.Content("prompt", "completion")
	feed(t, call, sseStream)
	call.End(nil, "")
	for k := range attrMap(h.span(t, "chat m").Attributes) {
		if strings.Contains(k, "messages") {
			t.Fatalf("%s recorded without CaptureContent", k)
		}
	}
}

func TestContentTruncationKeepsEscapes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{CaptureContent: true, MaxContentBytes: 9})
	_, call := h.in.Start(context.Background(), tracing.Request{Model: "m"})
	observeJSON(call, `{"choices":[{"message":{"content":"ab\u00e9\"cdéf"},"finish_reason":"length"}]}`)
	call.End(nil, "")
	got := attrMap(h.span(t, "chat m").Attributes)["gen_ai.output.messages"]
	// 9 bytes of text, cut at a character boundary, then escaped as JSON.
	want := `[{"role":"assistant","parts":[{"type":"text","content":"abé\"cdé"}],"finish_reason":"length"}]`
	if got != want {
		t.Fatalf("got %s", got)
	}
	h = newHarness(t, tracing.Config{CaptureContent: true, MaxContentBytes: 5})
	_, call = h.in.Start(context.Background(), tracing.Request{Model: "m"})
	call.Content("abcdé", "völlig")
	call.End(nil, "")
	a := attrMap(h.span(t, "chat m").Attributes)
	if a["gen_ai.input.messages"] != "abcd" || a["gen_ai.output.messages"] != "völl" {
		t.Fatalf("truncation at a character boundary: %q %q", a["gen_ai.input.messages"], a["gen_ai.output.messages"])
	}
}

func TestServerSpan(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{})
	ctx, call := h.in.Start(context.Background(), tracing.Request{
		Operation: "infer", Provider: "kserve", Model: "resnet", Server: true, Stream: true,
		ServerAddress: "10.0.0.1", ServerPort: 8001,
	})
	_, a := call.StartAttempt(ctx, 1)
	a.End(nil, "")
	call.FirstChunk(time.Now())
	call.Usage(tracing.Usage{InputTokens: 5, OutputTokens: -1})
	call.End(nil, "")
	s := h.span(t, "infer resnet")
	if s.SpanKind != trace.SpanKindServer {
		t.Fatalf("kind %v", s.SpanKind)
	}
	if a := h.span(t, tracing.AttemptSpanName); a.SpanKind != trace.SpanKindInternal {
		t.Fatalf("server attempt kind %v", a.SpanKind)
	}
	attrs := attrMap(s.Attributes)
	if attrs["gen_ai.usage.input_tokens"] != "5" || attrs["llm.total_tokens"] != "" || attrs["gen_ai.usage.output_tokens"] != "" {
		t.Fatalf("usage attrs %v", attrs)
	}
	ms := h.metrics(t)
	for _, name := range []string{"gen_ai.server.request.duration", "gen_ai.server.time_to_first_token"} {
		if p := histPoints(t, ms[name]); len(p) != 1 || p[0].attrs["gen_ai.operation.name"] != "infer" {
			t.Fatalf("%s points %+v", name, p)
		}
	}
	for _, name := range []string{"gen_ai.client.operation.duration", "gen_ai.client.token.usage"} {
		if _, ok := ms[name]; ok {
			t.Fatalf("%s recorded for a server span", name)
		}
	}
}

func TestBreakerAndBudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{})
	h.in.BreakerTransition("api.openai.com/chat", "closed", "open")
	_, call := h.in.Start(context.Background(), chatRequest())
	call.BudgetRejected(1, "server_error")
	call.Breaker("open")
	call.End(errors.New("x"), "server_error")
	ms := h.metrics(t)
	tr := sumPoints(t, ms[tracing.MetricBreakerTransitions])
	if tr[fmt.Sprint(map[string]string{"infermesh.breaker.name": "api.openai.com/chat",
		"infermesh.breaker.from": "closed", "infermesh.breaker.to": "open"})] != 1 {
		t.Fatalf("transitions %v", tr)
	}
	if b := sumPoints(t, ms[tracing.MetricBudgetRejections]); len(b) != 1 {
		t.Fatalf("budget %v", b)
	}
	s := h.span(t, "chat gpt-4o-mini")
	if len(s.Events) != 1 || s.Events[0].Name != tracing.BudgetRejectedEvent || attrMap(s.Attributes)["infermesh.breaker.state"] != "open" {
		t.Fatalf("events %+v", s.Events)
	}
}

func TestMeshClientTimeMeasured(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, tracing.Config{})
		ctx, call := h.in.Start(context.Background(), tracing.Request{Model: "m"})
		time.Sleep(3 * time.Millisecond)
		call.Mesh(tracing.Mesh{UpstreamServiceTime: time.Millisecond}) // measured from the call's start
		_, a := call.StartAttempt(ctx, 2)
		time.Sleep(5 * time.Millisecond)
		a.Mesh(tracing.Mesh{UpstreamServiceTime: 4 * time.Millisecond}) // measured from the attempt's start
		a.End(nil, "")
		call.End(nil, "")
		wantAttrs(t, "attempt span", h.span(t, tracing.AttemptSpanName).Attributes, map[string]string{
			"infermesh.attempt":                    "2",
			"infermesh.mesh.upstream_service_time": "0.004000",
			"infermesh.mesh.client_time":           "0.005000",
			"infermesh.mesh.overhead":              "0.001000",
		})
		a2 := attrMap(h.span(t, "chat m").Attributes)
		if a2["infermesh.mesh.client_time"] != "0.005000" || a2["infermesh.mesh.overhead"] != "0.001000" {
			t.Fatalf("call span keeps the last mesh signals: %v", a2)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, tracing.Config{})
		_, call := h.in.Start(context.Background(), tracing.Request{Model: "m"})
		time.Sleep(3 * time.Millisecond)
		call.Mesh(tracing.Mesh{UpstreamServiceTime: time.Millisecond})
		call.End(nil, "")
		a := attrMap(h.span(t, "chat m").Attributes)
		if a["infermesh.mesh.client_time"] != "0.003000" || a["infermesh.mesh.overhead"] != "0.002000" {
			t.Fatalf("mesh attrs %v", a)
		}
	})
}

func TestNilSafety(t *testing.T) {
	t.Parallel()
	var in *tracing.Instrumenter
	ctx, call := in.Start(context.Background(), chatRequest())
	if call != nil || ctx != context.Background() {
		t.Fatal("nil Instrumenter must return ctx and a nil Call")
	}
	in.BreakerTransition("b", "closed", "open")
	in.InjectHeader(ctx, http.Header{})
	_ = in.Extract(ctx, nil)
	actx, a := call.StartAttempt(ctx, 1)
	if actx != ctx || a != nil {
		t.Fatal("nil Call StartAttempt")
	}
	_, fb := call.StartFallback(ctx, tracing.FallbackTarget{Name: "x"})
	a.Mesh(tracing.Mesh{UpstreamServiceTime: 1})
	a.HTTPStatus(200)
	a.End(nil, "")
	fb.End(errors.New("x"), "")
	call.Retry(1, time.Second, "x")
	call.BudgetRejected(1, "x")
	call.Breaker("open")
	call.Fallback("x")
	call.Mesh(tracing.Mesh{})
	call.FirstChunk(time.Now())
	call.Usage(tracing.Usage{})
	call.Response("m", "id", "stop")
	call.RequestID("r")
	call.Content("a", "b")
	observeJSON(call, fullResponse)
	call.Chunk()
	call.Output("x")
	call.Admission(tracing.Admission{Backend: "b", Mode: "local"})
	call.QuotaSettled("b", 1, 1, tracing.Remaining{Requests: 1, Tokens: 1})
	call.End(errors.New("x"), "")
	if call.CaptureContent() || call.Span().IsRecording() || tracing.CallFromContext(ctx) != nil {
		t.Fatal("nil Call")
	}
}

func TestNoopProvidersReturnNilCall(t *testing.T) {
	in, err := tracing.New(tracing.Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if c2, call := in.Start(ctx, chatRequest()); call != nil || c2 != ctx {
		t.Fatal("no-op providers must give a nil Call and the same context")
	}
	allocs := testing.AllocsPerRun(200, func() {
		ctx, call := in.Start(ctx, chatRequest())
		actx, a := call.StartAttempt(ctx, 1)
		in.InjectHeader(actx, nil)
		a.End(nil, "")
		call.Retry(1, time.Second, "x")
		call.Chunk()
		call.End(nil, "")
	})
	if allocs != 0 {
		t.Fatalf("%v allocations with no-op providers", allocs)
	}
}

func TestUnsetGlobalProvidersReturnNilCall(t *testing.T) {
	in, err := tracing.New(tracing.Config{})
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		_, call := in.Start(context.Background(), chatRequest())
		call.End(nil, "")
	})
	if allocs != 0 {
		t.Fatalf("%v allocations with unset global providers", allocs)
	}
}

func TestSampledOutWithoutMetrics(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	in, err := tracing.New(tracing.Config{TracerProvider: tp, MeterProvider: metricnoop.NewMeterProvider()})
	if err != nil {
		t.Fatal(err)
	}
	outerCtx := context.Background()
	ctx, call := in.Start(outerCtx, chatRequest())
	if call != nil {
		t.Fatal("sampled-out call without metrics should be nil")
	}
	if !trace.SpanFromContext(ctx).SpanContext().IsValid() {
		t.Fatal("the sampled-out span context should still propagate")
	}
}

func TestMetricsOnly(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	in, err := tracing.New(tracing.Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, call := in.Start(context.Background(), tracing.Request{Model: "m", Stream: true})
	if call == nil || call.Span().IsRecording() {
		t.Fatal("metrics-only call")
	}
	if _, a := call.StartAttempt(ctx, 1); a != nil {
		t.Fatal("attempt without a recording span")
	}
	feed(t, call, sseStream)
	call.End(nil, "")
	h := &harness{reader: reader}
	ms := h.metrics(t)
	for _, n := range []string{"gen_ai.client.operation.duration", "gen_ai.client.token.usage", "gen_ai.client.operation.time_to_first_chunk"} {
		if _, ok := ms[n]; !ok {
			t.Fatalf("%s not recorded", n)
		}
	}
}

func TestNestedNilCallHidesOuter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{})
	ctx, outer := h.in.Start(context.Background(), chatRequest())
	noop, _ := tracing.New(tracing.Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()})
	inner, call := noop.Start(ctx, chatRequest())
	if call != nil || tracing.CallFromContext(inner) != nil {
		t.Fatal("a nil inner call must hide the outer one")
	}
	outer.End(nil, "")
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{CaptureContent: true})
	ctx, call := h.in.Start(context.Background(), tracing.Request{Model: "m", Stream: true})
	done := make(chan struct{})
	for i := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			_, a := call.StartAttempt(ctx, i+1)
			for range 50 {
				ev, _ := llmwire.ParseEvent(llmwire.KindChat, nil, []byte(`{"model":"m","choices":[{"delta":{"content":"x"}}]}`))
				observeEvent(call, ev)
				a.Mesh(tracing.Mesh{UpstreamServiceTime: time.Millisecond})
				call.Retry(i+1, time.Millisecond, "x")
			}
			a.End(nil, "")
		}()
	}
	for range 4 {
		<-done
	}
	call.End(nil, "")
	if got := attrMap(h.span(t, "chat m").Attributes)["infermesh.stream.chunks"]; got != "200" {
		t.Fatalf("chunks %s", got)
	}
}

func TestServerFromURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		host string
		port int
	}{
		{"https://api.openai.com/v1/chat/completions", "api.openai.com", 443},
		{"http://localhost:11434/v1", "localhost", 11434},
		{"http://[::1]:8080/", "::1", 8080},
		{"http://[::1]/", "::1", 80},
		{"https://user:secret@example.com/?api_key=secret", "example.com", 443},
		{"unix:///tmp/sock", "", 0},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if h, p := tracing.ServerFromURL(u); h != tt.host || p != tt.port {
			t.Errorf("%s: got %q %d", tt.in, h, p)
		}
	}
	if h, p := tracing.ServerFromURL(nil); h != "" || p != 0 {
		t.Fatal("nil URL")
	}
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
