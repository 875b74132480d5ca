package breaker_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

// refBreaker is a plain reference model of the breaker: Resilience4j's rules
// written out directly, recounting the window from the full event list.
type refBreaker struct {
	timed                        bool
	size, minCalls, fr, sr, half int
	openFor                      time.Duration

	state    breaker.State
	openedAt time.Duration
	events   []refOutcome // closed-state outcomes since the last reset
	trials   refCounts
}

type refOutcome struct {
	at            time.Duration
	failure, slow bool
}

type refCounts struct{ total, failures, slow int }

func (c *refCounts) add(o refOutcome) {
	c.total++
	if o.failure {
		c.failures++
	}
	if o.slow {
		c.slow++
	}
}

func (c refCounts) over(minCalls, fr, sr int) bool {
	return c.total > 0 && c.total >= minCalls && (c.failures*100 >= fr*c.total || c.slow*100 >= sr*c.total)
}

func (r *refBreaker) window(now time.Duration) refCounts {
	var c refCounts
	evs := r.events
	if !r.timed && len(evs) > r.size {
		evs = evs[len(evs)-r.size:]
	}
	for _, e := range evs {
		if !r.timed || int64(e.at/time.Second) > int64(now/time.Second)-int64(r.size) {
			c.add(e)
		}
	}
	return c
}

func (r *refBreaker) stateAt(now time.Duration) breaker.State {
	if r.state == breaker.StateOpen && now >= r.openedAt+r.openFor {
		r.state, r.trials = breaker.StateHalfOpen, refCounts{}
	}
	return r.state
}

func (r *refBreaker) complete(now time.Duration, o refOutcome, excluded bool) {
	if excluded {
		return
	}
	o.at = now
	switch r.state {
	case breaker.StateClosed:
		r.events = append(r.events, o)
		if r.window(now).over(r.minCalls, r.fr, r.sr) {
			r.state, r.openedAt = breaker.StateOpen, now
		}
	case breaker.StateHalfOpen:
		r.trials.add(o)
		if r.trials.total < r.half {
			return
		}
		if r.trials.over(r.half, r.fr, r.sr) {
			r.state, r.openedAt = breaker.StateOpen, now
		} else {
			r.state, r.events = breaker.StateClosed, nil
		}
	}
}

// FuzzPolicy drives random sequences of calls (success, failure, excluded;
// fast or slow; spaced in time) through a Policy under synctest and checks,
// after every call, whether fn ran and the breaker's state against refBreaker.
func FuzzPolicy(f *testing.F) {
	f.Add(byte(0), byte(4), byte(3), byte(49), byte(99), byte(2), []byte{1, 1, 0, 1, 0xf8, 0, 0, 0, 1})
	f.Add(byte(1), byte(3), byte(2), byte(49), byte(49), byte(1), []byte{5, 4, 0x0c, 0x41, 0xf9, 4, 0, 2, 2, 1})
	f.Add(byte(0), byte(9), byte(4), byte(0), byte(99), byte(0), []byte{1, 0xf8, 2, 1, 0xf8, 0, 0xf8, 0})
	f.Fuzz(func(t *testing.T, kind, size, minCalls, failureRate, slowRate, half byte, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		r := &refBreaker{
			timed: kind&1 == 1, size: int(size%8) + 1, minCalls: int(minCalls%10) + 1,
			fr: int(failureRate%100) + 1, sr: int(slowRate%100) + 1, half: int(half%4) + 1,
			openFor: 3 * time.Second,
		}
		c := breakerOnly(breaker.Config{
			WindowSize: r.size, MinimumCalls: r.minCalls, FailureRate: float64(r.fr), SlowCallRate: float64(r.sr),
			HalfOpenCalls: r.half, OpenDuration: r.openFor, SlowCallDuration: time.Second,
		})
		if r.timed {
			c.WindowType = breaker.WindowTime
		} else {
			r.minCalls = min(r.minCalls, r.size)
		}
		synctest.Test(t, func(t *testing.T) {
			p := mustNew(t, c)
			start := time.Now()
			for i, op := range ops {
				time.Sleep(time.Duration(op>>3) * 250 * time.Millisecond)
				var err error
				o := refOutcome{failure: op&3 == 1, slow: op&4 != 0}
				excluded := op&3 == 2
				switch {
				case o.failure:
					err = errBoom
				case excluded:
					err = errBad
				}
				d := time.Duration(0)
				if o.slow {
					d = 1500 * time.Millisecond
				}
				admit := r.stateAt(time.Since(start)) != breaker.StateOpen
				ran, _ := call(p, d, err)
				if ran != admit {
					t.Fatalf("op %d (%#x) at %v: ran %v, reference admits %v", i, op, time.Since(start), ran, admit)
				}
				if ran {
					r.complete(time.Since(start), o, excluded)
				}
				if got, want := p.State(), r.stateAt(time.Since(start)); got != want {
					t.Fatalf("op %d (%#x) at %v: state %v, reference %v", i, op, time.Since(start), got, want)
				}
			}
		})
	})
}
