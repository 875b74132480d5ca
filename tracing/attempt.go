package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// Attempt is one try of a call (or one fallback target): a child span of the
// call span. Its methods are nil-safe; End must be called once.
type Attempt struct {
	c      *Call
	span   trace.Span
	start  time.Time
	status int
	// The fields below are guarded by c.mu.
	ended      bool
	mesh       Mesh
	clientTime time.Duration
	hasMesh    bool
}

// StartAttempt begins attempt n (1-based) of the call. The returned context
// carries the attempt's span, a child of the call span: inject it into the
// attempt's outgoing request (InjectHeader) so the server's spans join the
// trace under this attempt, whatever retries or fallbacks happen. ctx should
// be the context Start returned (or one derived from it).
//
// When the call records no span, StartAttempt returns ctx and a nil *Attempt.
func (c *Call) StartAttempt(ctx context.Context, n int) (context.Context, *Attempt) {
	if c == nil {
		return ctx, nil
	}
	if !c.rec {
		now := time.Now()
		c.mu.Lock()
		if !c.ended {
			c.attempts = max(c.attempts, n)
			c.attemptStart = now
		}
		c.mu.Unlock()
		return ctx, nil
	}
	c.mu.Lock()
	ended := c.ended
	c.attempts = max(c.attempts, n)
	c.mu.Unlock()
	if ended {
		return ctx, nil
	}
	kind := trace.SpanKindClient
	if c.server {
		kind = trace.SpanKindInternal // the server's own tries are in process
	}
	attrs := appendServer([]attribute.KeyValue{AttemptKey.Int(n)}, c.addr, c.port)
	ctx, span := c.in.tracer.Start(ctx, AttemptSpanName, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	a := &Attempt{c: c, span: span, start: time.Now()}
	c.mu.Lock()
	c.attemptStart = a.start
	c.mu.Unlock()
	return ctx, a
}

// FallbackTarget describes where a call was handed after its own attempts failed.
type FallbackTarget struct {
	// Name identifies the target (infermesh.fallback.target).
	Name string
	// Internal marks an in-process target (a function, a cache, a static
	// answer): its span kind is INTERNAL. Otherwise it is CLIENT.
	Internal bool
	// Model is the model the target serves; empty means the call's model.
	Model string
	// ServerAddress and ServerPort locate a remote target; zero values are
	// not recorded.
	ServerAddress string
	ServerPort    int
}

// StartFallback records the fallback (as Fallback does) and begins a child
// span for the work done by the target, named like a call span and of kind
// INTERNAL for an in-process target. End the returned Attempt when the target
// is done; then End the call.
func (c *Call) StartFallback(ctx context.Context, t FallbackTarget) (context.Context, *Attempt) {
	if c == nil {
		return ctx, nil
	}
	c.Fallback(t.Name)
	now := time.Now()
	c.mu.Lock()
	ended := c.ended
	if !ended {
		c.attemptStart = now
	}
	c.mu.Unlock()
	if ended || !c.rec {
		return ctx, nil
	}
	model := t.Model
	if model == "" {
		model = c.model
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs,
		semconv.GenAIOperationNameKey.String(c.op),
		semconv.GenAIProviderNameKey.String(c.provider),
		FallbackTargetKey.String(t.Name),
	)
	if model != "" {
		attrs = append(attrs, semconv.GenAIRequestModelKey.String(model))
	}
	if t.ServerAddress != "" {
		attrs = append(attrs, semconv.ServerAddressKey.String(t.ServerAddress))
	}
	if t.ServerPort > 0 {
		attrs = append(attrs, semconv.ServerPortKey.Int(t.ServerPort))
	}
	kind := trace.SpanKindClient
	if t.Internal {
		kind = trace.SpanKindInternal
	}
	ctx, span := c.in.tracer.Start(ctx, spanName(c.op, model),
		trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return ctx, &Attempt{c: c, span: span, start: time.Now()} // after the span's own start
}

// Mesh records the mesh signals of this attempt's response on the attempt
// span, and on the call span (where the last attempt's signals are kept). The
// client's own time of the exchange is measured now, from the attempt's start.
func (a *Attempt) Mesh(m Mesh) {
	if a == nil {
		return
	}
	now := time.Now()
	c := a.c
	c.mu.Lock()
	if !a.ended {
		a.mesh, a.clientTime, a.hasMesh = m, now.Sub(a.start), true
	}
	if !c.ended {
		c.mesh, c.clientTime, c.hasMesh = m, now.Sub(a.start), true
	}
	c.mu.Unlock()
}

// Backend records the named backend the attempt went to (infermesh.backend).
func (a *Attempt) Backend(name string) {
	if a != nil && name != "" {
		a.span.SetAttributes(BackendKey.String(name))
	}
}

// HTTPStatus records the attempt's HTTP response status code
// (http.response.status_code).
func (a *Attempt) HTTPStatus(code int) {
	if a == nil {
		return
	}
	a.c.mu.Lock()
	if !a.ended {
		a.status = code
	}
	a.c.mu.Unlock()
}

// End ends the attempt span. err and errorType are as for Call.End; the
// error's text is never recorded.
func (a *Attempt) End(err error, errorType string) {
	if a == nil {
		return
	}
	c := a.c
	c.mu.Lock()
	if a.ended {
		c.mu.Unlock()
		return
	}
	a.ended = true
	c.mu.Unlock()
	if errorType == "" && err != nil {
		errorType = classify(err)
	}
	var attrs []attribute.KeyValue
	if a.status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCodeKey.Int(a.status))
	}
	if a.hasMesh {
		attrs = appendMesh(attrs, a.mesh, a.clientTime)
	}
	if errorType != "" {
		attrs = append(attrs, semconv.ErrorTypeKey.String(errorType))
		a.span.SetStatus(codes.Error, errorType)
	}
	if len(attrs) > 0 {
		a.span.SetAttributes(attrs...)
	}
	a.span.End()
}
