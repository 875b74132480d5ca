package llmclient_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/infermesh/infermesh/internal/redistest"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/quota"
	"github.com/infermesh/infermesh/tracing"
)

// quotaMetrics collects the quota metrics: sums and gauges by their attributes.
func quotaMetrics(t *testing.T, tel *telemetry) map[string]map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out, enc := map[string]map[string]int64{}, attribute.DefaultEncoder()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			pts := map[string]int64{}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					pts[dp.Attributes.Encoded(enc)] = dp.Value
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					pts[dp.Attributes.Encoded(enc)] = dp.Value
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					pts[dp.Attributes.Encoded(enc)] = int64(dp.Count)
				}
			}
			out[m.Name] = pts
		}
	}
	return out
}

// TestTracingQuota: each admission is on the call's span (mode, wait, tokens reserved; an
// event when the quota refused) and in the quota metrics: admissions by outcome, the wait,
// tokens reserved against those used, and the backend's remaining quota.
func TestTracingQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tel := newTelemetry()
		lim, err := quota.New(quota.Config{MaxWait: quota.NoWait,
			Limits: map[string]quota.Limits{"llmtest.invalid": {RequestsPerMinute: 1, TokensPerMinute: 100000}}})
		if err != nil {
			t.Fatal(err)
		}
		e, done := newEnv(t, llmclient.Config{Tracing: tel.config(), Quota: lim, QuotaDefaultMaxTokens: 500})
		defer done()
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
			t.Fatal(err)
		}
		m := attrs(tel.callSpan(t))
		wantAttr(t, m, "infermesh.quota.mode", "local")
		wantAttr(t, m, "infermesh.quota.wait", 0.0)
		if v := m["infermesh.quota.tokens.reserved"].AsInt64(); v <= 500 {
			t.Errorf("reserved %d tokens, want the default 500 and the prompt's", v)
		}
		tel.spans.Reset()
		_, err = e.client.CreateChatCompletion(context.Background(), chatReq(false))
		if err == nil || !strings.Contains(err.Error(), "requests per minute") {
			t.Fatalf("second call of 1 per minute: %v, want refused by the quota", err)
		}
		s := tel.callSpan(t)
		refused := 0
		for _, ev := range s.Events {
			if ev.Name == tracing.QuotaRefusedEvent {
				refused++
			}
		}
		if refused == 0 {
			t.Errorf("no %s event on the refused call: %+v", tracing.QuotaRefusedEvent, s.Events)
		}

		ms := quotaMetrics(t, tel)
		backend := "infermesh.backend=llmtest.invalid"
		if n := ms[tracing.MetricQuotaAdmissions][backend+",infermesh.quota.mode=local,infermesh.quota.outcome=admitted"]; n != 1 {
			t.Errorf("admitted %d, want 1: %v", n, ms[tracing.MetricQuotaAdmissions])
		}
		if n := ms[tracing.MetricQuotaAdmissions][backend+",infermesh.quota.limit=requests per minute,infermesh.quota.mode=local,infermesh.quota.outcome=refused"]; n < 1 {
			t.Errorf("no refusal counted: %v", ms[tracing.MetricQuotaAdmissions])
		}
		if n := ms[tracing.MetricQuotaWait][backend+",infermesh.quota.mode=local"]; n != 1 {
			t.Errorf("%d waits recorded, want 1 (the admitted call)", n)
		}
		tok := ms[tracing.MetricQuotaTokens]
		reserved, actual := tok[backend+",infermesh.quota.tokens.type=reserved"], tok[backend+",infermesh.quota.tokens.type=actual"]
		if reserved <= 500 || actual <= 0 || actual >= reserved {
			t.Errorf("tokens reserved %d, actual %d: want the estimate above the usage", reserved, actual)
		}
		left := ms[tracing.MetricQuotaRemaining]
		if left[backend+",infermesh.quota.limit=requests"] != 0 || left[backend+",infermesh.quota.limit=tokens"] != 100000-actual {
			t.Errorf("remaining %v, want 0 requests and %d tokens", left, 100000-actual)
		}
	})
}

// TestTracingQuotaDegraded: a call admitted on the local limits because the shared quota's
// Redis does not answer says so on its span, with an event, and in the admissions metric.
func TestTracingQuotaDegraded(t *testing.T) {
	tel := newTelemetry()
	client := redis.NewClient(&redis.Options{Addr: redistest.FreeAddr(t), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer client.Close()
	lim, err := quota.New(quota.Config{Redis: client, RedisTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	e, done := newEnv(t, llmclient.Config{Tracing: tel.config(), Quota: lim})
	defer done()
	if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
		t.Fatalf("a call with Redis down: %v", err)
	}
	s := tel.callSpan(t)
	wantAttr(t, attrs(s), "infermesh.quota.mode", "degraded")
	found := false
	for _, ev := range s.Events {
		found = found || ev.Name == tracing.QuotaDegradedEvent
	}
	if !found {
		t.Errorf("no %s event: %+v", tracing.QuotaDegradedEvent, s.Events)
	}
	ms := quotaMetrics(t, tel)
	if n := ms[tracing.MetricQuotaAdmissions]["infermesh.backend=llmtest.invalid,infermesh.quota.mode=degraded,infermesh.quota.outcome=admitted"]; n != 1 {
		t.Errorf("admissions %v, want one degraded", ms[tracing.MetricQuotaAdmissions])
	}
}
