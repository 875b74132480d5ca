package breaker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/infermesh/infermesh/internal/deadline"
)

// Policy is one layered resilience policy: a time limiter, retries with a
// budget, and a circuit breaker, used through [Do]. Create it with [New]; it is
// safe for concurrent use, and one Policy should guard one upstream (the
// breaker's window is shared by all its calls).
type Policy struct {
	name    string
	s       settings
	cb      *gobreaker.CircuitBreaker[struct{}]
	created time.Time

	// Guarded by cb's mutex: gobreaker calls isExcluded, isSuccessful,
	// readyToTrip and onStateChange with it held.
	state State
	win   window
	half  tally

	ev eventQueue

	inflight atomic.Int64 // Do calls in progress
	retrying atomic.Int64 // Do calls in progress that are retrying

	pool      sync.Pool          // *tryState[T] for the time limiter
	deadlines deadline.Scheduler // the time limiter's deadlines
}

// New returns a Policy for c, or an error naming the first invalid field.
func New(c Config) (*Policy, error) {
	s, err := c.settings()
	if err != nil {
		return nil, err
	}
	p := &Policy{name: c.Name, s: s, created: time.Now()}
	p.win = newWindow(s.windowType, s.windowSize)
	// gobreaker leaves the open state once now is after its expiry; one
	// nanosecond less makes the breaker half-open at exactly OpenDuration.
	open := s.openDuration
	if open > 1 {
		open--
	}
	p.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          c.Name,
		MaxRequests:   uint32(s.halfOpenCalls),
		Timeout:       open,
		ReadyToTrip:   p.readyToTrip,
		OnStateChange: p.onStateChange,
		IsSuccessful:  p.isSuccessful,
		IsExcluded:    p.isExcluded,
	})
	return p, nil
}

// Name returns Config.Name.
func (p *Policy) Name() string { return p.name }

// State returns the breaker's state now. An open breaker whose OpenDuration has
// passed turns half-open here, as on the next call.
func (p *Policy) State() State {
	s := State(p.cb.State())
	p.flushEvents()
	return s
}

// outcomeCode is what an attempt hands gobreaker as its "error": the outcome
// bits, or codeExcluded. Small integer values convert to error without
// allocating.
type outcomeCode uint8

const codeExcluded outcomeCode = 0x80

func (c outcomeCode) Error() string { return "breaker: outcome" }

func codeFor(o Outcome, slow bool) outcomeCode {
	var c outcomeCode
	switch o {
	case OutcomeExcluded:
		return codeExcluded
	case OutcomeFailure:
		c = outcomeCode(bitFailure)
	}
	if slow {
		c |= outcomeCode(bitSlow)
	}
	return c
}

func (p *Policy) isExcluded(err error) bool {
	c, ok := err.(outcomeCode)
	return ok && c == codeExcluded
}

// isSuccessful records a non-excluded outcome and tells gobreaker whether the
// breaker should stay as it is (true) or change state (false: a closed breaker
// then asks readyToTrip, a half-open one opens).
//
// Closed: the outcome enters the window; false when a rate is over its
// threshold. Half-open: trial outcomes are tallied; the first HalfOpenCalls-1
// report true, and the last reports the judgement. gobreaker closes the breaker
// once HalfOpenCalls consecutive successes are reported.
func (p *Policy) isSuccessful(err error) bool {
	c, ok := err.(outcomeCode)
	if !ok {
		// A panic in fn, which gobreaker reports with an error of its own.
		c = outcomeCode(bitFailure)
	}
	o := uint8(c)
	if p.state == StateHalfOpen {
		p.half.add(o, 1)
		if p.half.total < p.s.halfOpenCalls {
			return true
		}
		return !p.half.over(p.s.halfOpenCalls, p.s.failureRate, p.s.slowRate)
	}
	var elapsed time.Duration
	if p.win.timed { // a count window needs no clock read
		elapsed = time.Since(p.created)
	}
	t := p.win.record(o, elapsed)
	return !t.over(p.s.minCalls, p.s.failureRate, p.s.slowRate)
}

// readyToTrip is asked only after isSuccessful returned false in the closed
// state, which means a threshold was reached.
func (p *Policy) readyToTrip(gobreaker.Counts) bool { return true }

// onStateChange runs under gobreaker's mutex: it resets the window state and
// queues the event for OnStateChange, which runs after the mutex is released.
func (p *Policy) onStateChange(_ string, from, to gobreaker.State) {
	p.state = State(to)
	switch p.state {
	case StateClosed:
		p.win.reset(time.Since(p.created))
	case StateHalfOpen:
		p.half = tally{}
	}
	if p.s.hooks.OnStateChange != nil {
		p.ev.push(stateEvent{State(from), State(to)})
	}
}

type stateEvent struct{ from, to State }

// eventQueue holds state changes until they can be reported with no lock
// held. One goroutine at a time delivers them, in order.
type eventQueue struct {
	pending atomic.Bool
	mu      sync.Mutex
	events  []stateEvent
	firing  bool
}

func (q *eventQueue) push(e stateEvent) {
	q.mu.Lock()
	q.events = append(q.events, e)
	q.pending.Store(true)
	q.mu.Unlock()
}

// flushEvents delivers queued state changes, unless another goroutine (or an
// outer frame of this one, when a hook calls back) is already delivering them:
// that one delivers these too before it stops.
func (p *Policy) flushEvents() {
	if !p.ev.pending.Load() {
		return
	}
	q := &p.ev
	q.mu.Lock()
	if q.firing {
		q.mu.Unlock()
		return
	}
	q.firing = true
	defer func() {
		// Reached normally with q.mu held and the queue empty; after a panicking
		// hook, without q.mu.
		if q.firing {
			q.mu.Lock()
			q.firing = false
			q.pending.Store(len(q.events) > 0)
		}
		q.mu.Unlock()
	}()
	for len(q.events) > 0 {
		e := q.events[0]
		q.events = q.events[1:]
		q.mu.Unlock()
		p.s.hooks.OnStateChange(p.name, e.from, e.to)
		q.mu.Lock()
	}
	q.events = q.events[:0]
	q.firing = false
	q.pending.Store(false)
}
