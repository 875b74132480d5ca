package tracing_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/tracing"
)

// TestSecretKeyNeverRecorded sends a known API key through every place a
// careless implementation would leak it: the URL (user info and query), the
// request headers handed to InjectHeader, an error body echoing the key, a
// stream error event, and the errors given to End. The key must appear
// nowhere in the exported spans, events, statuses or metrics.
func TestSecretKeyNeverRecorded(t *testing.T) {
	t.Parallel()
	const key = "sk-proj-SECRETKEY-4f9a8b7c6d5e3a2b1c0d"
	for _, capture := range []bool{false, true} {
		h := newHarness(t, tracing.Config{CaptureContent: capture})
		u, err := url.Parse("https://user:" + key + "@api.example.com:8443/v1/chat/completions?api_key=" + key)
		if err != nil {
			t.Fatal(err)
		}
		addr, port := tracing.ServerFromURL(u)
		ctx, call := h.in.Start(context.Background(), tracing.Request{
			Model: "gpt-4o", ServerAddress: addr, ServerPort: port, RequestID: "req-9",
		})

		hdr := http.Header{"Authorization": {"Bearer " + key}, "Api-Key": {key}, "X-Api-Key": {key}}
		actx, a := call.StartAttempt(ctx, 1)
		h.in.InjectHeader(actx, hdr)
		if hdr.Get("Authorization") != "Bearer "+key || hdr.Get("Traceparent") == "" {
			t.Fatal("InjectHeader must add traceparent and leave Authorization alone")
		}
		errBody := `{"error":{"message":"Incorrect API key provided: ` + key + `. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
		callErr := fmt.Errorf("POST %s: 401 Unauthorized (Authorization: Bearer %s): %s", u, key, errBody)
		a.HTTPStatus(401)
		a.End(callErr, "")
		observeJSON(call, errBody)
		call.Retry(1, time.Second, "auth")
		call.End(callErr, "auth")

		_, stream := h.in.Start(context.Background(), tracing.Request{Model: "gpt-4o", Stream: true, ServerAddress: addr})
		ev, _ := llmwire.ParseEvent(llmwire.KindChat, nil, []byte(`{"error":{"message":"invalid key `+key+`","type":"auth"}}`))
		observeEvent(stream, ev)
		stream.End(callErr, "")

		dump := exportDump(t, h)
		for _, needle := range []string{key, "SECRETKEY", "Bearer"} {
			if strings.Contains(dump, needle) {
				t.Fatalf("capture=%v: %q leaked into the exported telemetry:\n%s", capture, needle, dump)
			}
		}
		// The dump does hold the recorded values, so the check above can fail.
		for _, needle := range []string{"api.example.com", "req-9", "error.type=auth", "gen_ai.client.operation.duration", "infermesh.retry"} {
			if !strings.Contains(dump, needle) {
				t.Fatalf("dump lacks %q:\n%s", needle, dump)
			}
		}
	}
}

// exportDump renders every exported span and metric as text.
func exportDump(t testing.TB, h *harness) string {
	t.Helper()
	var b strings.Builder
	kvs := func(attrs []attribute.KeyValue) {
		for _, kv := range attrs {
			fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value.String())
		}
		b.WriteString("\n")
	}
	for _, s := range h.spans.GetSpans() {
		fmt.Fprintf(&b, "span %q kind=%v status=%v %q\n", s.Name, s.SpanKind, s.Status.Code, s.Status.Description)
		kvs(s.Attributes)
		for _, e := range s.Events {
			fmt.Fprintf(&b, " event %q", e.Name)
			kvs(e.Attributes)
		}
		for _, l := range s.Links {
			kvs(l.Attributes)
		}
		fmt.Fprintf(&b, "%+v\n", s)
	}
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			fmt.Fprintf(&b, "metric %s %s %s %+v\n", m.Name, m.Unit, m.Description, m.Data)
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					kvs(dp.Attributes.ToSlice())
				}
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					kvs(dp.Attributes.ToSlice())
				}
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					kvs(dp.Attributes.ToSlice())
				}
			}
		}
	}
	return b.String()
}
