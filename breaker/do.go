package breaker

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Do runs fn under p: the overall time limiter, then retries (within the retry
// budget), then the circuit breaker, then the per-try time limiter, then fn:
//
//	Timeout ( retry+budget ( breaker ( PerTryTimeout ( fn ) ) ) )
//
// Each attempt gets its own ctx, derived from the caller's, carrying the
// earlier of the per-try and overall deadlines; it is cancelled when the
// attempt ends (for the last attempt, as Do returns), so a value fn returns
// must not depend on that ctx staying alive.
//
// Do returns fn's value and a nil error on success. On failure it returns the
// last attempt's value (the zero value if the last attempt was abandoned by
// the time limiter or the breaker rejected the first one) with an [*Error]
// that wraps the last attempt's error, counts the attempts and gives the
// reason. Values of earlier attempts are dropped; fn should release anything
// a value holds (an HTTP body, say) before returning it with an error, or
// make it safe to drop.
//
// Retries: every error is retried, with full-jitter backoff, except the
// caller's own cancellation and errors the classifier calls not retryable. A
// call the breaker rejects ([ErrOpen]) is not retried. A Retry-After hint is
// honoured (the wait is the larger of the backoff and the hint) up to
// MaxRetryAfter; a longer hint stops with [ErrRetryAfterTooLong]. A retry is
// made only if its wait plus MinTryTime ends by the deadline (the caller's
// ctx deadline or the overall Timeout); otherwise Do stops at once with
// [ErrDeadlineTooShort] and never sleeps past the deadline. Mesh signals in
// the verdict: MeshRetried stops with [ErrMeshRetried], NoHealthyUpstream with
// [ErrNoHealthyUpstream], Overloaded makes the wait at least the hint and at
// least the un-jittered backoff interval. A retry over the retry budget stops
// with [ErrBudgetExhausted].
//
// Time limiter: when a Timeout or PerTryTimeout applies, fn runs on its own
// goroutine and Do returns at the deadline even if fn ignores its ctx. The
// abandoned goroutine is left to finish on its own; its result is discarded.
// The next attempt may start while it still runs, so fn must then be safe to
// run concurrently with itself. A panic in fn is never swallowed: while Do
// waits for fn it is raised again in Do; once Do has stopped waiting (at the
// deadline or the caller's cancellation) it is raised on fn's goroutine and
// ends the program, as any unrecovered panic would. A panic counts as a
// failure in the breaker's window; in the half-open state it reopens the
// breaker at once. When no time limit applies, fn runs on the caller's
// goroutine and must honour ctx itself to be cut short.
//
// Do is safe for concurrent use; p's window, budget and hooks are shared by
// all its calls.
func Do[T any](ctx context.Context, p *Policy, fn func(context.Context) (T, error)) (T, error) {
	c := p.begin(ctx)
	defer p.end(&c)
	var last attempt[T]
	for n := 1; ; n++ {
		a, ran := runAttempt(ctx, p, &c, fn)
		if !ran {
			return last.val, &Error{Attempts: n - 1, Last: last.err, Verdict: last.verdict, Reason: ErrOpen, RetryAfter: last.verdict.RetryAfter}
		}
		if a.err == nil {
			return a.val, nil
		}
		last = a
		if e := p.retry(ctx, &c, n, a.err, a.verdict); e != nil {
			return a.val, e
		}
	}
}

// call is the state of one Do call.
type call struct {
	deadline    time.Time     // the overall Timeout's deadline; zero: none
	perTry      time.Duration // 0: none
	maxAttempts int
	retrying    bool                        // counted in Policy.retrying
	bo          *backoff.ExponentialBackOff // made at the first retry
}

// begin starts a call with the policy's limits, or the context's [Overrides].
func (p *Policy) begin(ctx context.Context) call {
	timeout := p.s.timeout
	c := call{perTry: p.s.perTryTimeout, maxAttempts: p.s.maxAttempts}
	if o, ok := ctx.Value(overridesKey{}).(Overrides); ok {
		timeout = override(timeout, o.Timeout)
		c.perTry = override(c.perTry, o.PerTryTimeout)
		switch {
		case o.MaxAttempts < 0:
			c.maxAttempts = 1
		case o.MaxAttempts > 0:
			c.maxAttempts = o.MaxAttempts
		}
	}
	if timeout > 0 {
		c.deadline = time.Now().Add(timeout)
	}
	p.inflight.Add(1)
	return c
}

// override returns limit as an [Overrides] field o changes it: o when
// positive, none (0) when negative.
func override(limit, o time.Duration) time.Duration {
	switch {
	case o < 0:
		return 0
	case o > 0:
		return o
	}
	return limit
}

func (p *Policy) end(c *call) {
	p.inflight.Add(-1)
	if c.retrying {
		p.retrying.Add(-1)
	}
}

// runAttempt runs one attempt through the circuit breaker; ran is false when
// the breaker rejected it. See circuit.go for what the attempt tells gobreaker.
func runAttempt[T any](ctx context.Context, p *Policy, c *call, fn func(context.Context) (T, error)) (a attempt[T], ran bool) {
	defer p.reportStateChanges()
	_, _ = p.cb.Execute(func() (struct{}, error) {
		ran = true
		adm := p.admit()
		finished := false
		defer func() {
			if !finished {
				// fn panicked: a failure. The panic goes on through gobreaker,
				// which counts a failure too, to Do's caller.
				p.record(adm, OutcomeFailure, false, time.Now())
			}
		}()
		a = runTry(ctx, p, c, fn)
		finished = true
		return struct{}{}, p.record(adm, a.verdict.Outcome, a.slow, a.end)
	})
	return a, ran
}
