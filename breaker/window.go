package breaker

import "time"

// Outcome bits recorded in a window.
const (
	bitFailure uint8 = 1 << iota
	bitSlow
)

// outcomeBits returns the bits of a non-excluded outcome.
func outcomeBits(o Outcome, slow bool) uint8 {
	var b uint8
	if o == OutcomeFailure {
		b |= bitFailure
	}
	if slow {
		b |= bitSlow
	}
	return b
}

// tally counts the calls of a window: total non-excluded calls, failures and
// slow calls.
type tally struct {
	total, failures, slow int
}

func (t *tally) add(o uint8, sign int) {
	t.total += sign
	if o&bitFailure != 0 {
		t.failures += sign
	}
	if o&bitSlow != 0 {
		t.slow += sign
	}
}

// over reports whether t, holding at least minCalls calls, has a failure or
// slow-call rate at or above its threshold (Resilience4j's rule).
func (t tally) over(minCalls int, failureRate, slowRate float64) bool {
	if t.total == 0 || t.total < minCalls {
		return false
	}
	n := float64(t.total)
	return float64(t.failures)*100 >= failureRate*n || float64(t.slow)*100 >= slowRate*n
}

// countWindow holds the outcomes of the last len(ring) calls.
type countWindow struct {
	ring []uint8
	next int // where the next outcome goes
	n    int // outcomes held, up to len(ring)
	tally
}

func (w *countWindow) record(o uint8) {
	if w.n == len(w.ring) {
		w.tally.add(w.ring[w.next], -1)
	} else {
		w.n++
	}
	w.ring[w.next] = o
	w.tally.add(o, 1)
	if w.next++; w.next == len(w.ring) {
		w.next = 0
	}
}

func (w *countWindow) reset() {
	w.next, w.n, w.tally = 0, 0, tally{}
}

// timeWindow holds the outcomes of the last len(buckets) bucket periods. The
// bucket of epoch e (the number of whole periods since the window's origin) is
// buckets[e % len]; it leaves the window when epoch e+len begins.
type timeWindow struct {
	buckets []tally
	period  time.Duration
	head    int64 // latest epoch seen; buckets hold epochs (head-len, head]
	tally
}

// advance moves the window to epoch, evicting the buckets that leave it.
func (w *timeWindow) advance(epoch int64) {
	if epoch <= w.head {
		return
	}
	n := int64(len(w.buckets))
	from := w.head + 1
	if epoch-n+1 > from {
		from = epoch - n + 1
	}
	for e := from; e <= epoch; e++ {
		b := &w.buckets[e%n]
		w.tally.total -= b.total
		w.tally.failures -= b.failures
		w.tally.slow -= b.slow
		*b = tally{}
	}
	w.head = epoch
}

// record adds an outcome at elapsed (time since the window's origin).
func (w *timeWindow) record(o uint8, elapsed time.Duration) {
	w.advance(int64(elapsed / w.period))
	b := &w.buckets[w.head%int64(len(w.buckets))]
	b.add(o, 1)
	w.tally.add(o, 1)
}

// reset empties the window at elapsed.
func (w *timeWindow) reset(elapsed time.Duration) {
	clear(w.buckets)
	w.head = int64(elapsed / w.period)
	w.tally = tally{}
}

// window is the closed-state sliding window, count- or time-based.
type window struct {
	timed bool
	count countWindow
	time  timeWindow
}

func newWindow(t WindowType, size int) window {
	if t == WindowTime {
		return window{timed: true, time: timeWindow{buckets: make([]tally, size), period: time.Second}}
	}
	return window{count: countWindow{ring: make([]uint8, size)}}
}

// record adds an outcome and returns the window's tally.
func (w *window) record(o uint8, elapsed time.Duration) tally {
	if w.timed {
		w.time.record(o, elapsed)
	} else {
		w.count.record(o)
	}
	return w.tally()
}

// tally returns the window's tally as of its latest record.
func (w *window) tally() tally {
	if w.timed {
		return w.time.tally
	}
	return w.count.tally
}

// reset empties the window at elapsed.
func (w *window) reset(elapsed time.Duration) {
	if w.timed {
		w.time.reset(elapsed)
		return
	}
	w.count.reset()
}
