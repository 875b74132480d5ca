package breaker

import (
	"time"

	"github.com/sony/gobreaker/v2"
)

// How the policy drives gobreaker. gobreaker is the state machine: it admits
// calls, rejects them while open, turns half-open after OpenDuration and admits
// HalfOpenCalls trial calls there. The policy keeps Resilience4j's window and
// trial tally under its own lock, and uses gobreaker only through its
// documented Settings:
//
//   - an admitted attempt records its outcome in the window (closed) or the
//     tally (half-open), and returns a [report] as its request's error;
//   - IsExcluded and IsSuccessful read nothing but that report;
//   - ReadyToTrip, which gobreaker asks after a failure in the closed state,
//     judges the window;
//   - OnStateChange starts the new state's count and queues the change for
//     Hooks.OnStateChange.
//
// Two Resilience4j rules are not gobreaker's own: the window's rates are judged
// after every call, so a success can trip the breaker (gobreaker asks
// ReadyToTrip only after a failure), and the half-open state judges the rates
// over all its trial calls (gobreaker reopens on the first failed trial and
// closes after MaxRequests consecutive successes). So a report is the policy's
// judgement rather than the attempt's outcome: in the closed state, a failure
// when the window is over a threshold, whatever the attempt's outcome; in the
// half-open state, a success for every trial call until the last one, which
// reports the judgement of them all.

// report is what an admitted attempt tells gobreaker, as its request's error.
// It converts to error without allocating.
type report uint8

const (
	// reportSuccess: gobreaker counts a success. In the half-open state,
	// HalfOpenCalls of them close the breaker.
	reportSuccess report = iota
	// reportFailure: gobreaker counts a failure. In the closed state it then
	// asks ReadyToTrip; in the half-open state it opens.
	reportFailure
	// reportExcluded: neither. In the half-open state gobreaker admits another
	// trial call in its place.
	reportExcluded
)

func (r report) Error() string { return "breaker: attempt report" }

func isExcluded(err error) bool {
	r, ok := err.(report)
	return ok && r == reportExcluded
}

// isSuccessful is false for reportFailure and for any error that is not a
// report: gobreaker's own, for a request that panicked.
func isSuccessful(err error) bool {
	r, ok := err.(report)
	return ok && r == reportSuccess
}

// admission is what the policy knew of the breaker when an attempt began.
type admission struct {
	gen   uint64
	state State
}

// admit is an admitted attempt's first step. It reads the generation before the
// state, so that an attempt which meets a state change between the two counts
// nowhere rather than in the wrong state. Reading the state also reports an
// open -> half-open change before the first trial call runs.
func (p *Policy) admit() admission {
	p.mu.Lock()
	gen := p.gen
	p.mu.Unlock()
	return admission{gen: gen, state: p.State()}
}

// record counts the outcome of an attempt that ended at end in the state it was
// admitted in, and returns the report for gobreaker. An attempt that ends after
// a state change counts nowhere; gobreaker ignores its report as well.
func (p *Policy) record(a admission, o Outcome, slow bool, end time.Time) report {
	if o == OutcomeExcluded {
		return reportExcluded
	}
	bits, at := outcomeBits(o, slow), end.Sub(p.created)
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.gen != p.gen {
		return reportSuccess
	}
	switch a.state {
	case StateClosed:
		if p.win.record(bits, at).over(p.s.minCalls, p.s.failureRate, p.s.slowRate) {
			return reportFailure
		}
	case StateHalfOpen:
		p.trials.add(bits, 1)
		// over is false until all HalfOpenCalls trial calls have completed.
		if p.trials.over(p.s.halfOpenCalls, p.s.failureRate, p.s.slowRate) {
			return reportFailure
		}
	}
	return reportSuccess
}

// readyToTrip is gobreaker's ReadyToTrip, asked with gobreaker's mutex held
// after a failure in the closed state. It judges the window as it is now: other
// attempts may have changed it since the one that reported.
func (p *Policy) readyToTrip(gobreaker.Counts) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.win.tally().over(p.s.minCalls, p.s.failureRate, p.s.slowRate)
}

// onStateChange is gobreaker's OnStateChange, called with gobreaker's mutex
// held. It starts the new state's count and queues the change for
// Hooks.OnStateChange, which runs later with no lock held.
func (p *Policy) onStateChange(_ string, from, to gobreaker.State) {
	now := time.Since(p.created)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	switch to {
	case gobreaker.StateClosed:
		p.win.reset(now)
	case gobreaker.StateHalfOpen:
		p.trials = tally{}
	}
	if p.s.hooks.OnStateChange != nil {
		p.events = append(p.events, stateChange{stateOf(from), stateOf(to)})
	}
}

type stateChange struct{ from, to State }

// reportStateChanges runs Hooks.OnStateChange for the queued state changes, in
// order, with no lock held. One goroutine reports at a time: one that finds
// another at it (or finds itself, when a hook calls back into the policy)
// leaves the queue to that one, which reports every change queued before it
// stops.
func (p *Policy) reportStateChanges() {
	if p.s.hooks.OnStateChange == nil {
		return
	}
	p.mu.Lock()
	if p.reporting || len(p.events) == 0 {
		p.mu.Unlock()
		return
	}
	p.reporting = true
	p.mu.Unlock()
	finished := false
	defer func() {
		if !finished { // a hook panicked: the next call reports the rest
			p.mu.Lock()
			p.reporting = false
			p.mu.Unlock()
		}
	}()
	for {
		e, ok := p.nextStateChange()
		if !ok {
			finished = true
			return
		}
		p.s.hooks.OnStateChange(p.Name(), e.from, e.to)
	}
}

// nextStateChange takes the next queued change or, when none is left, ends the
// reporting in the same critical section, so that no change is left behind.
func (p *Policy) nextStateChange() (stateChange, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events) == 0 {
		p.events, p.reporting = nil, false
		return stateChange{}, false
	}
	e := p.events[0]
	p.events = p.events[1:]
	return e, true
}
