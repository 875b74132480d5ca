package llmclient

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// w3cUnlessGlobal injects with the global propagator when the program installed one,
// and with W3C Trace Context otherwise, so that a call's attempts carry traceparent
// out of the box (OpenTelemetry's global propagator does nothing until set).
type w3cUnlessGlobal struct{}

var w3c = propagation.TraceContext{}

func (w3cUnlessGlobal) pick() propagation.TextMapPropagator {
	if g := otel.GetTextMapPropagator(); len(g.Fields()) > 0 {
		return g
	}
	return w3c
}

func (p w3cUnlessGlobal) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	p.pick().Inject(ctx, c)
}

func (p w3cUnlessGlobal) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return p.pick().Extract(ctx, c)
}

func (p w3cUnlessGlobal) Fields() []string { return p.pick().Fields() }
