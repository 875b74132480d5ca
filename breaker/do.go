package breaker

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/infermesh/infermesh/internal/deadline"
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
// waits it is raised again in Do; after Do has returned it is raised on fn's
// goroutine or, if the deadline's callback lets go of the attempt last, on the
// time limiter's (and ends the program, as any unrecovered panic would). When no
// time limit applies, fn runs on the caller's goroutine and must honour ctx
// itself to be cut short.
//
// Do is safe for concurrent use; p's window, budget and hooks are shared by
// all its calls.
func Do[T any](ctx context.Context, p *Policy, fn func(context.Context) (T, error)) (T, error) {
	c := p.begin(ctx)
	defer p.end(&c)
	var (
		val  T
		last error
		v    Verdict
	)
	for attempt := 1; ; attempt++ {
		err, av, ran := runAttempt(ctx, p, &c, fn, &val)
		if !ran {
			return val, &Error{Attempts: attempt - 1, Last: last, Verdict: v, Reason: ErrOpen, RetryAfter: v.RetryAfter}
		}
		if err == nil {
			return val, nil
		}
		last, v = err, av
		if e := p.retry(ctx, &c, attempt, err, &v); e != nil {
			return val, e
		}
	}
}

// call is the state of one Do call.
type call struct {
	// Instants are offsets from Policy.created: time.Since reads only the
	// monotonic clock, which is cheaper than time.Now, and offsets add
	// without time.Time's bookkeeping.
	start       time.Duration // set only when a time limit applies
	overall     time.Duration // the overall deadline; 0 = none
	perTry      time.Duration // 0 = none
	maxAttempts int
	timed       bool // fn runs on its own goroutine
	retried     bool // a retry has happened
	retrying    bool // counted in Policy.retrying
	bo          *backoff.ExponentialBackOff
}

func (p *Policy) begin(ctx context.Context) call {
	c := call{perTry: p.s.perTryTimeout, maxAttempts: p.s.maxAttempts}
	timeout := p.s.timeout
	if o, ok := ctx.Value(overridesKey{}).(Overrides); ok {
		switch {
		case o.Timeout < 0:
			timeout = 0
		case o.Timeout > 0:
			timeout = o.Timeout
		}
		switch {
		case o.PerTryTimeout < 0:
			c.perTry = 0
		case o.PerTryTimeout > 0:
			c.perTry = o.PerTryTimeout
		}
		switch {
		case o.MaxAttempts < 0:
			c.maxAttempts = 1
		case o.MaxAttempts > 0:
			c.maxAttempts = o.MaxAttempts
		}
	}
	c.timed = timeout > 0 || c.perTry > 0
	if c.timed {
		c.start = time.Since(p.created)
		if timeout > 0 {
			c.overall = c.start + timeout
		}
	}
	p.inflight.Add(1)
	return c
}

func (p *Policy) end(c *call) {
	p.inflight.Add(-1)
	if c.retrying {
		p.retrying.Add(-1)
	}
}

// runAttempt runs one attempt through the breaker. ran is false when the
// breaker rejected it.
func runAttempt[T any](ctx context.Context, p *Policy, c *call, fn func(context.Context) (T, error), val *T) (err error, v Verdict, ran bool) {
	// The closure does not escape: gobreaker only calls it.
	_, _ = p.cb.Execute(func() (struct{}, error) {
		ran = true
		p.flushEvents() // an open -> half-open transition, before the trial runs
		var slow bool
		err, v, slow = runTry(ctx, p, c, fn, val)
		if err == nil {
			return struct{}{}, codeFor(OutcomeSuccess, slow)
		}
		return struct{}{}, codeFor(v.Outcome, slow)
	})
	p.flushEvents()
	return err, v, ran
}

var timeoutVerdict = Verdict{Outcome: OutcomeFailure, Retryable: true, Class: ClassTimeout}

// runTry runs fn once under the per-try time limiter and classifies the result.
func runTry[T any](ctx context.Context, p *Policy, c *call, fn func(context.Context) (T, error), val *T) (err error, v Verdict, slow bool) {
	start := c.start // the first timed attempt starts with the call
	if !c.timed || c.retried {
		start = time.Since(p.created)
	}
	if c.timed {
		var limit time.Duration
		var returned bool
		limit, returned, err = runTimed(ctx, p, c, fn, val, start)
		// fn returned before its limit, which is shorter than SlowCallDuration,
		// had passed: the attempt cannot have been slow, and the clock need not
		// say so.
		slow = !(returned && limit < p.s.slowDuration) && time.Since(p.created)-start > p.s.slowDuration
	} else {
		actx := &tryCtx{parent: ctx}
		defer actx.end()
		*val, err = fn(actx)
		slow = time.Since(p.created)-start > p.s.slowDuration
	}
	if err == nil {
		return nil, Verdict{}, slow
	}
	switch {
	case err == ErrPerTryTimeout || err == ErrTimeout:
		v = timeoutVerdict
	case ctx.Err() == context.Canceled:
		// The caller cancelled: whatever fn made of it, it is not the
		// upstream's failure.
		v = p.s.classifier(err)
		v.Outcome, v.Retryable, v.Class = OutcomeExcluded, false, ClassCanceled
	default:
		v = p.s.classifier(err)
	}
	return err, v, slow
}

// runTimed runs fn on its own goroutine and waits for it, the attempt's
// deadline or the caller's ctx, whichever comes first. It returns the time
// the attempt was allowed from start, whether fn returned before the deadline
// scheduler saw that time pass, and fn's error or the time limiter's.
//
// The deadline is kept by p's deadline scheduler rather than by
// context.WithDeadline: a runtime timer per attempt costs more than the rest
// of the time limiter together, while the scheduler arms its one timer only
// when a deadline is earlier than every pending one.
func runTimed[T any](ctx context.Context, p *Policy, c *call, fn func(context.Context) (T, error), val *T, start time.Duration) (limit time.Duration, returned bool, err error) {
	at, cause := c.overall, ErrTimeout
	if c.perTry > 0 {
		if d := start + c.perTry; at == 0 || d < at {
			at, cause = d, ErrPerTryTimeout
		}
	}
	deadline := p.created.Add(at)
	st := getTryState[T](p)
	st.fn = fn
	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		// The caller's deadline comes first and ends the attempt itself, as
		// context.WithDeadline would leave it to.
		st.ctx = &tryCtx{parent: ctx, deadline: d}
		st.refs.Store(2) // Do and fn's goroutine; st.expiry is not registered, so its Stop reports false
	} else {
		st.ctx = &tryCtx{parent: ctx, deadline: deadline, perTry: cause == ErrPerTryTimeout, limited: true}
		st.refs.Store(3) // Do, fn's goroutine and the deadline entry
		p.deadlines.Schedule(&st.expiry, deadline, st.expire)
	}
	tc := st.ctx
	go st.run()
	if done := ctx.Done(); done == nil {
		<-st.wake
	} else {
		select {
		case <-st.wake:
		case <-done:
		}
	}
	early := st.expiry.Stop()
	if early {
		st.refs.Add(-1) // the entry never fired, nor will it
	}
	if st.finished.Load() {
		v, ferr, pv, panicked := st.v, st.err, st.pv, st.panicked
		st.panicked = false // received: whoever lets go last must not raise it again
		st.release()
		if panicked {
			panic(pv)
		}
		*val = v
		return at - start, early, ferr
	}
	// Abandoned: the deadline passed or the caller's ctx ended first.
	var zero T
	*val = zero
	err = tc.settle()
	if err != ErrPerTryTimeout && err != ErrTimeout {
		err = context.Cause(ctx)
	}
	if st.refs.Add(-1) == 0 {
		// fn finished between the two checks; its result is discarded, but a
		// panic is not swallowed.
		st.recycleOrPanic()
	}
	return at - start, false, err
}

// tryCtx is the ctx of an attempt. It behaves as a context.WithCancelCause
// ctx of the caller's, ended when the attempt ends; with a limit of its own (a
// timed attempt whose deadline comes before the caller's), as a
// context.WithDeadlineCause ctx with that limit as the cause.
//
// Its context is made only when fn first looks at it (Done, Err or Value), so a
// fn that never does (the kind the time limiter exists for) costs no context
// and no runtime timer: Do itself is woken by the policy's deadline scheduler.
// An end that comes first is applied when the context is made.
type tryCtx struct {
	parent   context.Context
	deadline time.Time // zero: the parent's
	limited  bool      // deadline is the attempt's own limit, not the caller's
	perTry   bool      // that limit is PerTryTimeout's, not Timeout's
	made     atomic.Pointer[madeCtx]
	mu       sync.Mutex
	cause    error // why it ended; nil while it runs
}

// limit is the cause the attempt's own limit ends it with, or nil. (Two flags
// rather than the error keep tryCtx in a smaller allocation class.)
func (c *tryCtx) limit() error {
	switch {
	case !c.limited:
		return nil
	case c.perTry:
		return ErrPerTryTimeout
	}
	return ErrTimeout
}

type madeCtx struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (c *tryCtx) inner() context.Context {
	if m := c.made.Load(); m != nil {
		return m.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.made.Load(); m != nil {
		return m.ctx
	}
	m := new(madeCtx)
	if limit := c.limit(); limit != nil && (c.cause == nil || c.cause == limit) {
		// The limit ends it as a deadline (DeadlineExceeded, for contexts derived
		// from it too), which only a context with the deadline can do. Once made,
		// this context decides how the attempt ended: see expire and settle.
		dctx, cancel := context.WithDeadlineCause(c.parent, c.deadline, limit)
		m.ctx, m.cancel = dctx, func(error) { cancel() }
	} else {
		m.ctx, m.cancel = context.WithCancelCause(c.parent)
		if c.cause != nil {
			m.cancel(c.cause)
		}
	}
	c.made.Store(m)
	return m.ctx
}

// end ends c as the attempt finishes (fn returned, or it ran on the caller's
// goroutine), unless it has ended already.
func (c *tryCtx) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cause == nil {
		c.cause = context.Canceled
		if m := c.made.Load(); m != nil {
			m.cancel(context.Canceled)
		}
	}
}

// expire records that the limit has passed, as the deadline scheduler sees
// it. A made context has a deadline of its own and decides for itself; an
// unmade one ends with the caller's cause if the caller's ctx ended first (its
// cancellation is not the upstream's timeout), or with the limit.
func (c *tryCtx) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cause == nil && c.made.Load() == nil {
		c.cause = c.limit()
		if c.parent.Err() != nil {
			c.cause = context.Cause(c.parent)
		}
	}
}

// settle ends an abandoned attempt and returns why it ended, as fn sees it: a
// made context's own cause (waiting for it, should its deadline trail the
// scheduler's by a moment), or the recorded one.
func (c *tryCtx) settle() error {
	c.mu.Lock()
	m := c.made.Load()
	if m == nil {
		if c.cause == nil {
			c.cause = context.Cause(c.parent) // only the caller's end abandons before expire
		}
		cause := c.cause
		c.mu.Unlock()
		return cause
	}
	c.mu.Unlock()
	<-m.ctx.Done()
	return context.Cause(m.ctx)
}

func (c *tryCtx) Deadline() (time.Time, bool) {
	if c.deadline.IsZero() {
		return c.parent.Deadline()
	}
	return c.deadline, true
}
func (c *tryCtx) Done() <-chan struct{} { return c.inner().Done() }
func (c *tryCtx) Err() error            { return c.inner().Err() }
func (c *tryCtx) Value(key any) any     { return c.inner().Value(key) }

func (c *tryCtx) String() string { return "breaker.attempt" }

// tryState is one run of fn on its own goroutine, pooled per Policy. The
// caller, the goroutine and the deadline entry each hold a reference; the last
// to let go recycles it.
type tryState[T any] struct {
	run      func()        // st.body, bound once
	expire   func()        // st.fire, bound once
	wake     chan struct{} // 1-buffered: fn finished or the deadline passed
	expiry   deadline.Entry
	pool     *sync.Pool
	fn       func(context.Context) (T, error)
	ctx      *tryCtx
	v        T
	err      error
	pv       any
	panicked bool
	finished atomic.Bool
	refs     atomic.Int32
}

var errGoexit = errors.New("breaker: fn called runtime.Goexit")

func getTryState[T any](p *Policy) *tryState[T] {
	if st, ok := p.pool.Get().(*tryState[T]); ok {
		return st
	}
	st := &tryState[T]{pool: &p.pool, wake: make(chan struct{}, 1)}
	st.run, st.expire = st.body, st.fire
	return st
}

func (st *tryState[T]) body() {
	normal := false
	defer func() {
		if !normal {
			if r := recover(); r != nil {
				st.pv, st.panicked = r, true
			} else {
				st.err = errGoexit
			}
		}
		st.finished.Store(true)
		st.ctx.end()
		st.signal()
		st.unref()
	}()
	st.v, st.err = st.fn(st.ctx)
	normal = true
}

// fire runs on the deadline scheduler's goroutine when the attempt's deadline
// passes.
func (st *tryState[T]) fire() {
	st.ctx.expire()
	st.signal()
	st.unref()
}

// signal wakes Do. Both fn's goroutine and the deadline entry may signal; the
// token Do did not take is drained when st is recycled.
func (st *tryState[T]) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// unref drops the reference of fn's goroutine or of the deadline entry. The
// last one out after Do has returned without the result recycles st, raising
// fn's panic if it had one that nobody received.
func (st *tryState[T]) unref() {
	if st.refs.Add(-1) == 0 {
		st.recycleOrPanic()
	}
}

// release drops the caller's reference after it took the result.
func (st *tryState[T]) release() {
	if st.refs.Add(-1) == 0 {
		st.recycle()
	}
}

// recycleOrPanic recycles st, then raises the panic of fn if it had one that
// nobody received.
func (st *tryState[T]) recycleOrPanic() {
	pv, panicked := st.pv, st.panicked
	st.recycle()
	if panicked {
		panic(pv)
	}
}

func (st *tryState[T]) recycle() {
	var zero T
	st.fn, st.ctx, st.v, st.err, st.pv, st.panicked = nil, nil, zero, nil, nil, false
	st.finished.Store(false)
	select {
	case <-st.wake:
	default:
	}
	st.pool.Put(st)
}

// retry decides whether attempt, which failed with err and verdict v, is
// followed by another, and waits for it. It returns nil to retry, or the
// error Do returns.
func (p *Policy) retry(ctx context.Context, c *call, attempt int, err error, v *Verdict) *Error {
	stop := func(reason error) *Error {
		return &Error{Attempts: attempt, Last: err, Verdict: *v, Reason: reason, RetryAfter: v.RetryAfter}
	}
	if e := ctx.Err(); e != nil {
		return stop(e)
	}
	elapsed := time.Since(p.created)
	if c.overall != 0 && elapsed >= c.overall {
		return stop(ErrTimeout)
	}
	switch {
	case v.Signals.NoHealthyUpstream:
		return stop(ErrNoHealthyUpstream)
	case v.Signals.MeshRetried:
		return stop(ErrMeshRetried)
	case !v.Retryable:
		return stop(ErrNotRetryable)
	case attempt >= c.maxAttempts:
		return stop(ErrRetriesExhausted)
	case v.RetryAfter > p.s.maxRetryAfter:
		return stop(ErrRetryAfterTooLong)
	}

	// The wait: full jitter over the exponential interval, at least the hint.
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
	wait := time.Duration(rand.Int64N(int64(interval) + 1))
	wait = max(wait, v.RetryAfter)
	if v.Signals.Overloaded {
		wait = max(wait, interval)
	}

	// Never sleep past the deadline: the wait and a minimal try must fit.
	var deadline time.Time
	if c.overall != 0 {
		deadline = p.created.Add(c.overall)
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if !deadline.IsZero() {
		minTry := p.s.minTryTime
		if c.perTry > 0 && c.perTry < minTry {
			minTry = c.perTry
		}
		if p.created.Add(elapsed + wait + minTry).After(deadline) {
			return stop(ErrDeadlineTooShort)
		}
	}

	// The retry budget: retrying calls over calls in flight.
	allowed := max(int64(p.s.budgetPercent*float64(p.inflight.Load())/100), p.s.minRetryConc)
	if !c.retrying {
		if p.retrying.Add(1) > allowed {
			p.retrying.Add(-1)
			p.budgetRejected(ctx, attempt, wait, err, v)
			return stop(ErrBudgetExhausted)
		}
		c.retrying = true
	} else if p.retrying.Load() > allowed {
		p.budgetRejected(ctx, attempt, wait, err, v)
		return stop(ErrBudgetExhausted)
	}

	if h := p.s.hooks.OnRetry; h != nil {
		h(ctx, RetryEvent{Attempt: attempt, Wait: wait, Err: err, Verdict: *v})
	}
	c.retried = true
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return stop(ctx.Err())
		}
	}
	return nil
}

func (p *Policy) budgetRejected(ctx context.Context, attempt int, wait time.Duration, err error, v *Verdict) {
	if h := p.s.hooks.OnBudgetRejected; h != nil {
		h(ctx, RetryEvent{Attempt: attempt, Wait: wait, Err: err, Verdict: *v})
	}
}
