package breaker

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/infermesh/infermesh/internal/sleep"
)

// retry decides whether attempt n, which failed with err and verdict v, is
// followed by another, and waits for it. It returns nil to retry, or the
// error Do returns.
func (p *Policy) retry(ctx context.Context, c *call, n int, err error, v Verdict) *Error {
	stop := func(reason error) *Error {
		return &Error{Attempts: n, Last: err, Verdict: v, Reason: reason, RetryAfter: v.RetryAfter}
	}
	if reason := p.noRetry(ctx, c, n, v); reason != nil {
		return stop(reason)
	}
	wait := p.nextWait(c, v)
	if !p.fits(ctx, c, wait) {
		return stop(ErrDeadlineTooShort)
	}
	e := RetryEvent{Attempt: n, Wait: wait, Err: err, Verdict: v}
	if !p.takeBudget(c) {
		if h := p.s.hooks.OnBudgetRejected; h != nil {
			h(ctx, e)
		}
		return stop(ErrBudgetExhausted)
	}
	if h := p.s.hooks.OnRetry; h != nil {
		h(ctx, e)
	}
	if !sleep.For(ctx, wait) {
		return stop(ctx.Err())
	}
	return nil
}

// noRetry returns why no attempt may follow attempt n whatever the wait, or
// nil.
func (p *Policy) noRetry(ctx context.Context, c *call, n int, v Verdict) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
		return ErrTimeout
	case v.Signals.NoHealthyUpstream:
		return ErrNoHealthyUpstream
	case v.Signals.MeshRetried:
		return ErrMeshRetried
	case !v.Retryable:
		return ErrNotRetryable
	case n >= c.maxAttempts:
		return ErrRetriesExhausted
	case v.RetryAfter > p.s.maxRetryAfter:
		return ErrRetryAfterTooLong
	}
	return nil
}

// nextWait returns the wait before the next attempt: a random duration up to
// the exponential interval ("full jitter"), but at least the hint and, when a
// sidecar shed the request, at least the interval itself.
func (p *Policy) nextWait(c *call, v Verdict) time.Duration {
	if c.bo == nil {
		c.bo = &backoff.ExponentialBackOff{
			InitialInterval: p.s.boInitial,
			Multiplier:      p.s.boMultiplier,
			MaxInterval:     p.s.boMax,
			Stop:            backoff.Stop,
			Clock:           backoff.SystemClock,
		}
		c.bo.Reset()
	}
	interval := c.bo.NextBackOff() // RandomizationFactor 0: the plain interval
	wait := max(time.Duration(rand.Int64N(int64(interval)+1)), v.RetryAfter)
	if v.Signals.Overloaded {
		wait = max(wait, interval)
	}
	return wait
}

// fits reports whether wait plus a minimal try (MinTryTime, or PerTryTimeout
// when shorter) ends by the deadline, the caller's or the overall Timeout's,
// whichever is earlier: Do never sleeps toward a deadline it cannot meet.
func (p *Policy) fits(ctx context.Context, c *call, wait time.Duration) bool {
	deadline := c.deadline
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if deadline.IsZero() {
		return true
	}
	minTry := p.s.minTryTime
	if c.perTry > 0 {
		minTry = min(minTry, c.perTry)
	}
	return !time.Now().Add(wait + minTry).After(deadline)
}

// takeBudget reports whether the retry budget has room for c's retry: at most
// BudgetPercent of the calls in flight may be retrying, and at least
// MinRetryConcurrency. A call counts as retrying from its first retry to its
// end; at a later retry it is checked again, as the calls in flight may have
// dropped.
func (p *Policy) takeBudget(c *call) bool {
	allowed := max(int64(p.s.budgetPercent*float64(p.inflight.Load())/100), p.s.minRetryConc)
	if c.retrying {
		return p.retrying.Load() <= allowed
	}
	if p.retrying.Add(1) > allowed {
		p.retrying.Add(-1)
		return false
	}
	c.retrying = true
	return true
}
