package breaker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Policy is one layered resilience policy: a time limiter, retries with a
// budget, and a circuit breaker, used through [Do]. Create it with [New]; it is
// safe for concurrent use, and one Policy should guard one upstream (the
// breaker's window is shared by all its calls).
type Policy struct {
	s       settings
	cb      *gobreaker.CircuitBreaker[struct{}] // the state machine; see circuit.go
	created time.Time                           // the time window's origin

	// mu guards the fields below it. gobreaker holds its own mutex when it
	// calls readyToTrip and onStateChange, which take mu: the lock order is
	// gobreaker's mutex, then mu. Nothing calls into gobreaker with mu held,
	// and no hook runs with either held.
	mu        sync.Mutex
	gen       uint64        // state changes so far: an attempt counts only in the one it was admitted in
	win       window        // the closed state's sliding window
	trials    tally         // the half-open state's trial calls
	events    []stateChange // state changes not yet reported to Hooks.OnStateChange
	reporting bool          // a goroutine is reporting events

	inflight atomic.Int64 // Do calls in progress
	retrying atomic.Int64 // Do calls in progress that are retrying
}

// New returns a Policy for c, or an error naming the first invalid field.
func New(c Config) (*Policy, error) {
	s, err := c.settings()
	if err != nil {
		return nil, err
	}
	p := &Policy{s: s, created: time.Now(), win: newWindow(s.windowType, s.windowSize)}
	// gobreaker leaves the open state once its Timeout has passed, strictly;
	// one nanosecond less makes the breaker half-open at exactly OpenDuration.
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
		IsSuccessful:  isSuccessful,
		IsExcluded:    isExcluded,
	})
	return p, nil
}

// Name returns Config.Name.
func (p *Policy) Name() string { return p.cb.Name() }

// State returns the breaker's state now. An open breaker whose OpenDuration has
// passed turns half-open here, as on the next call.
func (p *Policy) State() State {
	s := stateOf(p.cb.State())
	p.reportStateChanges()
	return s
}

func stateOf(s gobreaker.State) State {
	switch s {
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	case gobreaker.StateOpen:
		return StateOpen
	}
	return StateClosed
}
