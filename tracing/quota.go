package tracing

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Metric names of the quota admission (package quota, through llmclient).
const (
	// MetricQuotaAdmissions counts admissions by backend, mode and outcome
	// ("admitted" or "refused", with the refusing limit).
	MetricQuotaAdmissions = "infermesh.quota.admissions"
	// MetricQuotaWait is the time admitted calls spent in admission (waiting for
	// quota or a free slot, and the Redis round trip), in seconds.
	MetricQuotaWait = "infermesh.quota.wait"
	// MetricQuotaTokens counts tokens reserved before calls and used by them
	// (infermesh.quota.tokens.type "reserved" or "actual"), so that dashboards can
	// compare the estimate with the usage.
	MetricQuotaTokens = "infermesh.quota.tokens"
	// MetricQuotaRemaining is what the backend's quota holds, as this process last
	// saw it (infermesh.quota.limit "requests" or "tokens").
	MetricQuotaRemaining = "infermesh.quota.remaining"
)

// Attribute keys of the quota admission.
const (
	// QuotaModeKey (string) on a call span and the quota metrics: how the call was
	// admitted: "local" (no Redis), "shared" (the quota in Redis) or "degraded" (Redis
	// configured but failing: this replica's share of the local limits).
	QuotaModeKey = attribute.Key("infermesh.quota.mode")
	// QuotaWaitKey (float64, s) on a call span: the time its attempts spent in admission.
	QuotaWaitKey = attribute.Key("infermesh.quota.wait")
	// QuotaReservedKey (int) on a call span: the tokens its last admission reserved.
	QuotaReservedKey = attribute.Key("infermesh.quota.tokens.reserved")
	// QuotaOutcomeKey (string) on the admissions counter: "admitted" or "refused".
	QuotaOutcomeKey = attribute.Key("infermesh.quota.outcome")
	// QuotaLimitKey (string) on a refusal (span event and counter): the limit that
	// refused, such as "tokens per minute"; on the remaining gauge: "requests" or
	// "tokens".
	QuotaLimitKey = attribute.Key("infermesh.quota.limit")
	// QuotaTokensTypeKey (string) on the tokens counter: "reserved" or "actual".
	QuotaTokensTypeKey = attribute.Key("infermesh.quota.tokens.type")
)

// Events of the quota admission.
const (
	// QuotaRefusedEvent is added to a call span when the quota refused an attempt,
	// with the limit (QuotaLimitKey) and the wait it would have needed (QuotaWaitKey).
	QuotaRefusedEvent = "infermesh.quota.refused"
	// QuotaDegradedEvent is added to a call span admitted on the local limits because
	// the shared quota's Redis failed or was slow.
	QuotaDegradedEvent = "infermesh.quota.degraded"
)

// Admission is how one attempt of a call went through its backend's quota.
type Admission struct {
	// Backend is the quota's key: the backend the attempt was for.
	Backend string
	// Mode is "local", "shared" or "degraded" (see QuotaModeKey).
	Mode string
	// Waited is the time spent in admission, admitted or refused.
	Waited time.Duration
	// Tokens is the tokens reserved (or asked for, when refused).
	Tokens int
	// Refused names the limit that refused the attempt; "" when it was admitted.
	// RetryIn is then the wait the limit would have needed.
	Refused string
	RetryIn time.Duration
	// Remaining is what the backend's quota holds after the admission.
	Remaining Remaining
}

// Remaining is what a backend's quota holds; a negative count is unknown (no limit
// configured or learned) and is not recorded.
type Remaining struct {
	Requests, Tokens int
}

// Admission records one admission of the call: the call span's mode, summed wait and
// reserved tokens, an event for a refusal or a degraded mode, and the admissions, wait
// and remaining metrics.
func (c *Call) Admission(a Admission) {
	if !c.update(func() {
		c.hasQuota, c.quotaMode = true, a.Mode
		c.quotaWait += a.Waited
		if a.Refused == "" {
			c.quotaTokens = a.Tokens
		}
	}) {
		return
	}
	if c.rec {
		switch {
		case a.Refused != "":
			c.span.AddEvent(QuotaRefusedEvent, trace.WithAttributes(BackendKey.String(a.Backend),
				QuotaLimitKey.String(a.Refused), QuotaWaitKey.Float64(a.RetryIn.Seconds())))
		case a.Mode == "degraded":
			c.span.AddEvent(QuotaDegradedEvent, trace.WithAttributes(BackendKey.String(a.Backend)))
		}
	}
	in, ctx := c.in, c.ctx
	backend, mode := BackendKey.String(a.Backend), QuotaModeKey.String(a.Mode)
	if in.quotaAdmissions.Enabled(ctx) {
		if a.Refused != "" {
			in.quotaAdmissions.Add(ctx, 1, metric.WithAttributes(backend, mode,
				QuotaOutcomeKey.String("refused"), QuotaLimitKey.String(a.Refused)))
		} else {
			in.quotaAdmissions.Add(ctx, 1, metric.WithAttributes(backend, mode, QuotaOutcomeKey.String("admitted")))
		}
	}
	if a.Refused == "" && in.quotaWait.Enabled(ctx) {
		in.quotaWait.Record(ctx, a.Waited.Seconds(), metric.WithAttributes(backend, mode))
	}
	c.remaining(backend, a.Remaining)
}

// QuotaSettled records the true-up of an admission of the call to backend: the tokens
// reserved and those the call used (the tokens counter; a negative actual, unknown, is
// not recorded), and what the backend's quota holds after it. It is recorded even after
// End, since a stream's reservation is settled when it is closed.
func (c *Call) QuotaSettled(backend string, reserved, actual int, left Remaining) {
	if c == nil {
		return
	}
	in, ctx, b := c.in, c.ctx, BackendKey.String(backend)
	if in.quotaTokens.Enabled(ctx) {
		in.quotaTokens.Add(ctx, int64(reserved), metric.WithAttributes(b, QuotaTokensTypeKey.String("reserved")))
		if actual >= 0 {
			in.quotaTokens.Add(ctx, int64(actual), metric.WithAttributes(b, QuotaTokensTypeKey.String("actual")))
		}
	}
	c.remaining(b, left)
}

func (c *Call) remaining(backend attribute.KeyValue, left Remaining) {
	in, ctx := c.in, c.ctx
	if !in.quotaRemaining.Enabled(ctx) {
		return
	}
	if left.Requests >= 0 {
		in.quotaRemaining.Record(ctx, int64(left.Requests), metric.WithAttributes(backend, QuotaLimitKey.String("requests")))
	}
	if left.Tokens >= 0 {
		in.quotaRemaining.Record(ctx, int64(left.Tokens), metric.WithAttributes(backend, QuotaLimitKey.String("tokens")))
	}
}

// appendQuota adds the call's admission to its span's attributes.
func (c *Call) appendQuota(attrs []attribute.KeyValue) []attribute.KeyValue {
	if !c.hasQuota {
		return attrs
	}
	attrs = append(attrs, QuotaModeKey.String(c.quotaMode), QuotaWaitKey.Float64(c.quotaWait.Seconds()))
	if c.quotaTokens > 0 {
		attrs = append(attrs, QuotaReservedKey.Int(c.quotaTokens))
	}
	return attrs
}

// quotaInstruments creates the quota metrics.
func (in *Instrumenter) quotaInstruments(m metric.Meter) (err error) {
	if in.quotaAdmissions, err = m.Int64Counter(MetricQuotaAdmissions, metric.WithUnit("{call}"),
		metric.WithDescription("Quota admissions of GenAI calls, by backend, mode and outcome.")); err != nil {
		return err
	}
	if in.quotaWait, err = m.Float64Histogram(MetricQuotaWait, metric.WithUnit("s"),
		metric.WithDescription("Time admitted GenAI calls spent in quota admission."),
		metric.WithExplicitBucketBoundaries(quotaWaitBuckets...)); err != nil {
		return err
	}
	if in.quotaTokens, err = m.Int64Counter(MetricQuotaTokens, metric.WithUnit("{token}"),
		metric.WithDescription("Tokens reserved before GenAI calls and used by them.")); err != nil {
		return err
	}
	in.quotaRemaining, err = m.Int64Gauge(MetricQuotaRemaining, metric.WithUnit("{unit}"),
		metric.WithDescription("What a backend's quota holds, requests or tokens, as last seen."))
	return err
}

// quotaWaitBuckets start below a local admission and a Redis round trip, and reach
// the longest waits a MaxWait allows.
var quotaWaitBuckets = []float64{0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30}
