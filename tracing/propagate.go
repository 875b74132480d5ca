package tracing

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

func (in *Instrumenter) propagator() propagation.TextMapPropagator {
	if in == nil || in.prop == nil {
		return otel.GetTextMapPropagator()
	}
	return in.prop
}

// Inject writes the trace context of ctx (such as an attempt's context) into
// carrier with the configured (or global) propagator. It reads nothing else
// from the carrier.
func (in *Instrumenter) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	in.propagator().Inject(ctx, carrier)
}

// InjectHeader writes the trace context of ctx into h (W3C traceparent and
// tracestate with the TraceContext propagator) for an outgoing HTTP request.
// Only the propagator's own fields are set; other headers, such as
// Authorization, are neither read nor changed. Clone a request before
// changing its headers.
func (in *Instrumenter) InjectHeader(ctx context.Context, h http.Header) {
	in.propagator().Inject(ctx, propagation.HeaderCarrier(h))
}

// Extract returns ctx with the remote trace context read from carrier (for
// the server side of an RPC), using the configured (or global) propagator.
func (in *Instrumenter) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	return in.propagator().Extract(ctx, carrier)
}

// ServerFromURL returns server.address and server.port for a request URL:
// the host without brackets, and the explicit port or the scheme's default
// (443 for https and wss, 80 for http and ws, 0 when unknown). User
// information, path and query (which may hold keys) are not used.
func ServerFromURL(u *url.URL) (address string, port int) {
	if u == nil {
		return "", 0
	}
	host := u.Host
	if h, p, err := net.SplitHostPort(host); err == nil {
		host = h
		port, _ = strconv.Atoi(p)
	} else if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if port == 0 {
		switch u.Scheme {
		case "https", "wss":
			port = 443
		case "http", "ws":
			port = 80
		}
	}
	return host, port
}

// InjectHeader writes the trace context of ctx into h with the propagator of the
// call's instrumenter, for requests made on the call's behalf by code that holds only
// the context (a fallback target, say). On a nil Call it uses the global propagator.
func (c *Call) InjectHeader(ctx context.Context, h http.Header) {
	var in *Instrumenter
	if c != nil {
		in = c.in
	}
	in.InjectHeader(ctx, h)
}
