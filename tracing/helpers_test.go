package tracing_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/tracing"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness wires an Instrumenter to an in-memory span exporter and a manual
// metric reader.
type harness struct {
	in     *tracing.Instrumenter
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
}

func newHarness(t testing.TB, cfg tracing.Config) *harness {
	t.Helper()
	h := &harness{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(h.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() {
		_ = h.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	cfg.TracerProvider = h.tp
	cfg.MeterProvider = mp
	if cfg.Propagator == nil {
		cfg.Propagator = propagation.TraceContext{}
	}
	in, err := tracing.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.in = in
	return h
}

// span returns the one ended span with the given name.
func (h *harness) span(t testing.TB, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range h.spans.GetSpans() {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want 1 span named %q, got %d (all: %v)", name, len(found), spanNames(h.spans.GetSpans()))
	}
	return found[0]
}

func spanNames(ss tracetest.SpanStubs) []string {
	var n []string
	for _, s := range ss {
		n = append(n, s.Name)
	}
	return n
}

func (h *harness) metrics(t testing.TB) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != tracing.ScopeName {
			t.Fatalf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// attrMap renders attributes as name -> value text; float64 values are
// rounded to microseconds so durations compare.
func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = valueText(kv.Value)
	}
	return m
}

func valueText(v attribute.Value) string {
	switch v.Type() {
	case attribute.FLOAT64:
		return fmt.Sprintf("%.6f", v.AsFloat64())
	case attribute.STRINGSLICE:
		return fmt.Sprintf("%q", v.AsStringSlice())
	default:
		return v.String()
	}
}

// wantAttrs checks that got has exactly the keys of want with the same values;
// a want value of "*" accepts any value.
func wantAttrs(t testing.TB, what string, got []attribute.KeyValue, want map[string]string) {
	t.Helper()
	wantMap(t, what, attrMap(got), want)
}

func wantMap(t testing.TB, what string, g, want map[string]string) {
	t.Helper()
	var problems []string
	for k, w := range want {
		v, ok := g[k]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("missing %s (want %s)", k, w))
		case w != "*" && v != w:
			problems = append(problems, fmt.Sprintf("%s = %s, want %s", k, v, w))
		}
	}
	for k, v := range g {
		if _, ok := want[k]; !ok {
			problems = append(problems, fmt.Sprintf("unexpected %s = %s", k, v))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Fatalf("%s attributes:\n  %s", what, strings.Join(problems, "\n  "))
	}
}

// histPoints returns the data points of a float64 or int64 histogram as
// (attributes, count, sum, bounds).
type point struct {
	attrs  map[string]string
	count  uint64
	sum    float64
	bounds []float64
}

func histPoints(t testing.TB, m metricdata.Metrics) []point {
	t.Helper()
	var out []point
	switch d := m.Data.(type) {
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			out = append(out, point{attrMap(dp.Attributes.ToSlice()), dp.Count, dp.Sum, dp.Bounds})
		}
	case metricdata.Histogram[int64]:
		for _, dp := range d.DataPoints {
			out = append(out, point{attrMap(dp.Attributes.ToSlice()), dp.Count, float64(dp.Sum), dp.Bounds})
		}
	default:
		t.Fatalf("%s is a %T, not a histogram", m.Name, m.Data)
	}
	return out
}

func sumPoints(t testing.TB, m metricdata.Metrics) map[string]int64 {
	t.Helper()
	d, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is a %T, not an int64 sum", m.Name, m.Data)
	}
	out := map[string]int64{}
	for _, dp := range d.DataPoints {
		out[fmt.Sprint(attrMap(dp.Attributes.ToSlice()))] = dp.Value
	}
	return out
}
