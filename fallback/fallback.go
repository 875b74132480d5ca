package fallback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/tracing"
	"github.com/infermesh/infermesh/transport"
)

// HeaderFallback is set on every response a fallback target produced; its value is the
// target's name.
const HeaderFallback = "X-Infermesh-Fallback"

// HeaderDegraded is set on a response that is not a fresh answer to the request (a cached
// reply); its value says what kind of degradation it is, for example "cache".
const HeaderDegraded = "X-Infermesh-Degraded"

// ErrUnsupported is returned by a target that cannot answer this kind of call (for
// example a static reply asked for embeddings). The chain moves on to the next target.
var ErrUnsupported = errors.New("fallback: target does not support this operation")

// ErrNoTarget is returned by [Chain.Serve] when no target could answer; the error wraps
// each target's own error.
var ErrNoTarget = errors.New("fallback: no target could serve the call")

// Request is what a target is asked to serve: the caller's original call, already read.
type Request struct {
	// HTTP is the caller's request. Targets must not modify it; its Body has been read
	// into Body.
	HTTP *http.Request
	// Body is the exact request body.
	Body []byte
	// Operation is the API operation path below the version prefix, such as
	// "/chat/completions" or "/embeddings".
	Operation string
	// Model is the request's JSON "model" field.
	Model string
	// Stream reports whether the caller asked for a server-sent event stream.
	Stream bool
	// IncludeUsage reports whether the caller asked for the final usage chunk of a stream.
	IncludeUsage bool
	// Cause is the primary's failure that led to the fallback, if any.
	Cause error
	// Tenant identifies the caller by its credentials (a fingerprint such as
	// transport.Credentials.Fingerprint gives; never the credentials themselves). A
	// cache keeps each tenant's replies apart.
	Tenant string
	// Credentials names the request headers that carry credentials: a fallback endpoint
	// never forwards them. nil means transport.DefaultCredentials().
	Credentials transport.Credentials
}

// credentials returns r's credential header names.
func (r *Request) credentials() transport.Credentials {
	if r.Credentials == nil {
		return transport.DefaultCredentials()
	}
	return r.Credentials
}

// Target is one place a call can be served from. Implementations must be safe for
// concurrent use.
type Target interface {
	// Name identifies the target in the HeaderFallback header, in spans and in metrics.
	Name() string
	// Serve answers r. A target that cannot answer returns an error (ErrUnsupported
	// when it does not handle this operation at all); a response it returns with a
	// status of 429 or 5xx is treated as a failure and the chain moves on.
	Serve(ctx context.Context, r *Request) (*http.Response, error)
}

// Config configures a [Chain]. The zero value is a chain with no targets, which never
// serves anything.
type Config struct {
	// Targets are tried in order.
	Targets []Target
	// ContextLength, when set, is the only target used when the primary said the
	// request exceeds the model's context length (a larger-context model, typically).
	// When nil, such a request does not fail over.
	ContextLength Target
	// OnClientError makes a client error (400, 404, 422: the request itself is at
	// fault) fail over too. Off by default: another model would most likely reject it
	// as well, and the caller needs to see the error.
	OnClientError bool
	// OnAuthError makes an authentication or permission error (401, 403) fail over.
	// Off by default: a wrong key is a configuration error to surface, not to hide.
	OnAuthError bool
}

// Chain tries ordered fallback targets. It is safe for concurrent use.
type Chain struct {
	cfg Config
}

// New validates cfg and returns a chain.
func New(cfg Config) (*Chain, error) {
	seen := make(map[string]bool, len(cfg.Targets))
	for i, t := range cfg.Targets {
		if t == nil {
			return nil, fmt.Errorf("fallback: Targets[%d] is nil", i)
		}
		name := t.Name()
		if name == "" {
			return nil, fmt.Errorf("fallback: Targets[%d] has an empty name", i)
		}
		if seen[name] {
			return nil, fmt.Errorf("fallback: Targets[%d]: duplicate target name %q", i, name)
		}
		seen[name] = true
	}
	if cfg.ContextLength != nil && cfg.ContextLength.Name() == "" {
		return nil, errors.New("fallback: ContextLength target has an empty name")
	}
	return &Chain{cfg: cfg}, nil
}

// Empty reports whether the chain has no target at all.
func (c *Chain) Empty() bool {
	return c == nil || (len(c.cfg.Targets) == 0 && c.cfg.ContextLength == nil)
}

// Triggered reports whether the primary's failure err, classified as v, warrants a
// fallback. The triggers are: the circuit is open; too little of the deadline is left
// to try the primary; the mesh has no healthy upstream; a timeout (including a stream's
// first-token timeout); a rate limit or quota that waiting did not fix (the account is
// out of credit, or the call could not be admitted in time); retries ran out on a
// retryable error. A client or auth error
// fails over only when configured to, a context-length error only when a ContextLength
// target is set, and the caller's own cancellation never does.
func (c *Chain) Triggered(err error, v breaker.Verdict) bool {
	if c.Empty() || err == nil {
		return false
	}
	if v.Class == breaker.ClassCanceled || errors.Is(err, context.Canceled) {
		return false
	}
	switch {
	case errors.Is(err, breaker.ErrOpen),
		errors.Is(err, breaker.ErrDeadlineTooShort),
		v.Signals.NoHealthyUpstream:
		return len(c.cfg.Targets) > 0
	}
	switch v.Class {
	case breaker.ClassContextLength:
		return c.cfg.ContextLength != nil
	case breaker.ClassClientError:
		return c.cfg.OnClientError && len(c.cfg.Targets) > 0
	case breaker.ClassAuth:
		return c.cfg.OnAuthError && len(c.cfg.Targets) > 0
	}
	return len(c.cfg.Targets) > 0 && (v.Retryable || v.Class == breaker.ClassTimeout ||
		v.Class == breaker.ClassRateLimited || v.Signals.Overloaded)
}

// Serve tries the targets in order and returns the first answer, marked with
// HeaderFallback. A context-length failure (v.Class == breaker.ClassContextLength) goes
// only to the ContextLength target. When every target fails, the error wraps
// ErrNoTarget and each target's error.
func (c *Chain) Serve(ctx context.Context, r *Request, v breaker.Verdict) (*http.Response, error) {
	targets := c.cfg.Targets
	if v.Class == breaker.ClassContextLength {
		if c.cfg.ContextLength == nil {
			return nil, ErrNoTarget
		}
		targets = []Target{c.cfg.ContextLength}
	}
	call := tracing.CallFromContext(ctx) // nil when the call is not traced
	errs := make([]error, 0, len(targets)+1)
	errs = append(errs, ErrNoTarget)
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		tctx, span := call.StartFallback(ctx, describe(t))
		resp, err := t.Serve(tctx, r)
		if err == nil && resp != nil && failedStatus(resp.StatusCode) {
			err = fmt.Errorf("status %d", resp.StatusCode)
			drain(resp)
			resp = nil
		}
		if err != nil || resp == nil {
			if err == nil {
				err = errors.New("no response")
			}
			span.End(err, "")
			errs = append(errs, fmt.Errorf("target %q: %w", t.Name(), err))
			continue
		}
		span.HTTPStatus(resp.StatusCode)
		span.End(nil, "")
		resp.Header.Set(HeaderFallback, t.Name())
		return resp, nil
	}
	return nil, errors.Join(errs...)
}

func failedStatus(code int) bool {
	return code == http.StatusTooManyRequests || code >= 500
}

// drain reads a little of a discarded body so its connection can be reused, then
// closes it.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

// describe is how a target appears in traces: in-process targets get INTERNAL spans.
func describe(t Target) tracing.FallbackTarget {
	d := tracing.FallbackTarget{Name: t.Name()}
	if ip, ok := t.(InProcess); ok && ip.InProcess() {
		d.Internal = true
	}
	if e, ok := t.(*Endpoint); ok {
		d.Model = e.model
		d.ServerAddress, d.ServerPort = tracing.ServerFromURL(e.base)
	}
	return d
}
