package chaos_test

import (
	"sync/atomic"
	"time"
)

// loadProbe measures how late a timer of this process fires while a burst runs. On a
// quiet machine it is a few hundred microseconds; on a loaded 2-core machine under the
// race detector it grows to tens or hundreds of milliseconds, and every step a call takes
// after its deadline (the timer, the cancellation, the goroutines that close the body and
// return the error) waits as long. Margins scale with it, so a call that is late because
// the machine is slow is told apart from a call that ignored its deadline, which is late
// by far more.
type loadProbe struct {
	stop  chan struct{}
	done  chan struct{}
	worst atomic.Int64 // nanoseconds
}

// probeTick is the probe's sleep: short enough to sample a burst many times.
const probeTick = 5 * time.Millisecond

func startProbe() *loadProbe {
	p := &loadProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTimer(probeTick)
		defer t.Stop()
		for {
			start := time.Now()
			t.Reset(probeTick)
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			if late := time.Since(start) - probeTick; late > time.Duration(p.worst.Load()) {
				p.worst.Store(int64(late))
			}
		}
	}()
	return p
}

// sofar returns the worst lateness seen so far.
func (p *loadProbe) sofar() time.Duration { return time.Duration(p.worst.Load()) }

// end stops the probe and returns the worst lateness it saw.
func (p *loadProbe) end() time.Duration {
	close(p.stop)
	<-p.done
	return time.Duration(p.worst.Load())
}

// lateSteps is how many scheduling delays a call may wait through after its deadline
// before its caller has the error: the timer, the cancellation, the goroutine that
// closes the body, the reader that wakes, the SDK that returns. On a 2-core machine at a
// load average of 15 to 20 under the race detector, the latest call of a burst returned
// 1.5 times the worst lateness after its deadline.
const lateSteps = 5

// slackUnder is the time past its deadline a call may take to return, given the worst
// timer lateness seen while it ran.
func slackUnder(worst time.Duration) time.Duration { return slack + lateSteps*worst }
