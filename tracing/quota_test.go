package tracing_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/infermesh/infermesh/tracing"
)

// TestQuotaAdmission: a call's admissions reach its span (mode, summed wait, reserved
// tokens; events for a refusal and a degraded mode) and the quota metrics (admissions by
// outcome and mode, wait, reserved against actual tokens, remaining quota).
func TestQuotaAdmission(t *testing.T) {
	t.Parallel()
	h := newHarness(t, tracing.Config{})
	_, call := h.in.Start(context.Background(), chatRequest())
	call.Admission(tracing.Admission{Backend: "azure", Mode: "shared", Waited: 2 * time.Second, Tokens: 900,
		Refused: "tokens per minute", RetryIn: 40 * time.Second, Remaining: tracing.Remaining{Requests: 5, Tokens: 100}})
	call.Admission(tracing.Admission{Backend: "openai", Mode: "degraded", Waited: 250 * time.Millisecond, Tokens: 900,
		Remaining: tracing.Remaining{Requests: 59, Tokens: -1}})
	call.End(nil, "")
	call.QuotaSettled("openai", 900, 300, tracing.Remaining{Requests: 59, Tokens: -1}) // a stream settles after End

	s := h.span(t, "chat gpt-4o-mini")
	got := attrMap(s.Attributes)
	for k, want := range map[string]string{"infermesh.quota.mode": "degraded", "infermesh.quota.wait": "2.250000",
		"infermesh.quota.tokens.reserved": "900"} {
		if got[k] != want {
			t.Errorf("span %s = %q, want %q", k, got[k], want)
		}
	}
	if len(s.Events) != 2 || s.Events[0].Name != tracing.QuotaRefusedEvent || s.Events[1].Name != tracing.QuotaDegradedEvent {
		t.Fatalf("events %+v, want refused then degraded", s.Events)
	}
	wantAttrs(t, "refused event", s.Events[0].Attributes, map[string]string{"infermesh.backend": "azure",
		"infermesh.quota.limit": "tokens per minute", "infermesh.quota.wait": "40.000000"})

	ms := h.metrics(t)
	adm := sumPoints(t, ms[tracing.MetricQuotaAdmissions])
	for _, want := range []map[string]string{
		{"infermesh.backend": "azure", "infermesh.quota.mode": "shared", "infermesh.quota.outcome": "refused", "infermesh.quota.limit": "tokens per minute"},
		{"infermesh.backend": "openai", "infermesh.quota.mode": "degraded", "infermesh.quota.outcome": "admitted"},
	} {
		if adm[fmt.Sprint(want)] != 1 {
			t.Errorf("admissions %v: want 1 of %v", adm, want)
		}
	}
	wait := histPoints(t, ms[tracing.MetricQuotaWait])
	if len(wait) != 1 || wait[0].count != 1 || wait[0].sum != 0.25 || wait[0].attrs["infermesh.quota.mode"] != "degraded" {
		t.Errorf("wait %+v: want the one admitted call's 0.25 s", wait)
	}
	tok := sumPoints(t, ms[tracing.MetricQuotaTokens])
	if tok[fmt.Sprint(map[string]string{"infermesh.backend": "openai", "infermesh.quota.tokens.type": "reserved"})] != 900 ||
		tok[fmt.Sprint(map[string]string{"infermesh.backend": "openai", "infermesh.quota.tokens.type": "actual"})] != 300 {
		t.Errorf("tokens %v: want 900 reserved, 300 actual", tok)
	}
	g, ok := ms[tracing.MetricQuotaRemaining].Data.(metricdata.Gauge[int64])
	if !ok {
		t.Fatalf("remaining is a %T", ms[tracing.MetricQuotaRemaining].Data)
	}
	left := map[string]int64{}
	for _, dp := range g.DataPoints {
		left[fmt.Sprint(attrMap(dp.Attributes.ToSlice()))] = dp.Value
	}
	want := map[string]int64{
		fmt.Sprint(map[string]string{"infermesh.backend": "azure", "infermesh.quota.limit": "requests"}):  5,
		fmt.Sprint(map[string]string{"infermesh.backend": "azure", "infermesh.quota.limit": "tokens"}):    100,
		fmt.Sprint(map[string]string{"infermesh.backend": "openai", "infermesh.quota.limit": "requests"}): 59,
	}
	if fmt.Sprint(left) != fmt.Sprint(want) {
		t.Errorf("remaining %v, want %v (an unknown count is not recorded)", left, want)
	}
}
