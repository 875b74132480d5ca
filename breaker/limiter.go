package breaker

import (
	"context"
	"errors"
	"time"
)

// attempt is how one attempt ended.
type attempt[T any] struct {
	val     T
	err     error   // nil: a success
	verdict Verdict // the verdict on err; zero (a success) when err is nil
	slow    bool    // it took longer than SlowCallDuration
	end     time.Time
}

// runTry runs fn once under the per-try time limiter and judges how it ended.
func runTry[T any](ctx context.Context, p *Policy, c *call, fn func(context.Context) (T, error)) attempt[T] {
	start := time.Now()
	var a attempt[T]
	if deadline, cause := c.limit(start); deadline.IsZero() {
		a.val, a.err = runInline(ctx, fn)
	} else {
		a.val, a.err = runLimited(ctx, deadline, cause, fn)
	}
	a.end = time.Now()
	a.slow = a.end.Sub(start) > p.s.slowDuration
	if a.err != nil {
		a.verdict = p.judge(ctx, a.err)
	}
	return a
}

// limit returns the deadline of an attempt that starts at start, the earlier
// of the overall and the per-try one, and the error the attempt then ends
// with. A zero deadline means no time limit.
func (c *call) limit(start time.Time) (deadline time.Time, cause error) {
	deadline, cause = c.deadline, ErrTimeout
	if c.perTry > 0 {
		if d := start.Add(c.perTry); deadline.IsZero() || d.Before(deadline) {
			deadline, cause = d, ErrPerTryTimeout
		}
	}
	return deadline, cause
}

var timeoutVerdict = Verdict{Outcome: OutcomeFailure, Retryable: true, Class: ClassTimeout}

// judge returns the verdict on an attempt's error.
func (p *Policy) judge(ctx context.Context, err error) Verdict {
	switch {
	case err == ErrPerTryTimeout || err == ErrTimeout:
		return timeoutVerdict // the time limiter's own: the Classifier is not asked
	case ctx.Err() == context.Canceled:
		// The caller cancelled: whatever fn made of it, it is not the
		// upstream's failure.
		v := p.s.classifier(err)
		v.Outcome, v.Retryable, v.Class = OutcomeExcluded, false, ClassCanceled
		return v
	}
	return p.s.classifier(err)
}

// runInline runs fn on the caller's goroutine with a ctx that ends when fn
// returns.
func runInline[T any](ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	return fn(actx)
}

// runLimited runs fn on a goroutine of its own with a ctx that ends at deadline
// with cause, and returns when fn does or when that ctx ends (the deadline, or
// the caller's ctx ended), whichever comes first. In the second case it returns
// the ctx's cause (cause, or the caller's) and leaves fn to finish on its own.
func runLimited[T any](ctx context.Context, deadline time.Time, cause error, fn func(context.Context) (T, error)) (T, error) {
	actx, cancel := context.WithDeadlineCause(ctx, deadline, cause)
	defer cancel()
	// Unbuffered: fn's goroutine hands its result over only while Do waits.
	results := make(chan fnResult[T])
	go runFn(actx, fn, results)
	select {
	case r := <-results:
		if r.panicked {
			panic(r.panicValue)
		}
		return r.val, r.err
	case <-actx.Done():
		var zero T
		return zero, context.Cause(actx)
	}
}

// fnResult is how fn ended on its own goroutine.
type fnResult[T any] struct {
	val        T
	err        error
	panicValue any
	panicked   bool
}

var errGoexit = errors.New("breaker: fn called runtime.Goexit")

// runFn is fn's goroutine. It hands fn's result, or its panic, to Do while Do
// waits (until ctx ends). Once Do has stopped waiting, the result is dropped
// and a panic is raised again here.
func runFn[T any](ctx context.Context, fn func(context.Context) (T, error), results chan<- fnResult[T]) {
	var r fnResult[T]
	returned := false
	defer func() {
		if !returned {
			r.panicValue = recover() // nil only after runtime.Goexit
			r.panicked = r.panicValue != nil
			if !r.panicked {
				r.err = errGoexit
			}
		}
		select {
		case results <- r:
		case <-ctx.Done():
			if r.panicked {
				panic(r.panicValue)
			}
		}
	}()
	r.val, r.err = fn(ctx)
	returned = true
}
