// Package deadline runs callbacks at deadlines, many deadlines on one runtime timer.
//
// A runtime timer that becomes the earliest one wakes the network poller (and on a
// busy machine another thread) each time it is added. A client that gives every
// request its own deadline timer pays that on every request; a [Scheduler] pays it
// only when a new deadline is earlier than every pending one, which for deadlines of
// equal length (a route's per-try limit, a stream's first-token or idle limit) is
// about once per deadline length rather than once per request.
package deadline

import (
	"container/heap"
	"sync"
	"time"
)

// Scheduler runs each registered callback once its deadline has passed. The zero value
// is ready to use. It starts no goroutine of its own: the one timer's callback runs
// the due callbacks, each on that timer's goroutine, one after another, so callbacks
// must be short (cancelling a context is). Safe for concurrent use.
type Scheduler struct {
	mu    sync.Mutex
	q     queue
	timer *time.Timer
	armed time.Time // when the timer fires; zero when it is not armed
}

// Entry is one registered deadline. An Entry that is not pending may be
// registered again with [Scheduler.Schedule], so a caller that registers one
// deadline per operation can keep the Entry in a pooled struct and allocate
// nothing per operation.
type Entry struct {
	when time.Time
	fire func()
	idx  int // position in the queue; -1 when not queued
	s    *Scheduler
}

// At registers fire to run at when (at once, on the timer's goroutine, if when has
// passed).
func (s *Scheduler) At(when time.Time, fire func()) *Entry {
	e := new(Entry)
	s.Schedule(e, when, fire)
	return e
}

// Schedule registers e to run fire at when. e must be new (the zero Entry) or no
// longer pending: its Stop returned, or its callback has run.
func (s *Scheduler) Schedule(e *Entry, when time.Time, fire func()) {
	e.when, e.fire, e.s = when, fire, s
	s.mu.Lock()
	heap.Push(&s.q, e)
	s.arm(when)
	s.mu.Unlock()
}

// After registers fire to run after d.
func (s *Scheduler) After(d time.Duration, fire func()) *Entry {
	return s.At(time.Now().Add(d), fire)
}

// Stop unregisters e. It reports whether e was still pending: false means its
// callback has run or is running, or e was never registered.
func (e *Entry) Stop() bool {
	s := e.s
	if s == nil {
		return false
	}
	s.mu.Lock()
	if e.idx < 0 {
		s.mu.Unlock()
		return false
	}
	heap.Remove(&s.q, e.idx)
	s.mu.Unlock()
	return true
}

// arm makes the timer fire no later than when. Called with s.mu held.
func (s *Scheduler) arm(when time.Time) {
	if !s.armed.IsZero() && !when.Before(s.armed) {
		return // an earlier firing will re-arm for this one
	}
	s.armed = when
	d := time.Until(when)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.run)
		return
	}
	s.timer.Reset(d)
}

// run fires the due entries and re-arms for the next one.
func (s *Scheduler) run() {
	var due []func()
	s.mu.Lock()
	now := time.Now()
	for len(s.q) > 0 && !s.q[0].when.After(now) {
		e := heap.Pop(&s.q).(*Entry)
		due = append(due, e.fire)
	}
	s.armed = time.Time{}
	if len(s.q) > 0 {
		s.arm(s.q[0].when)
	}
	s.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// queue is a min-heap of entries by deadline.
type queue []*Entry

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].when.Before(q[j].when) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *queue) Push(x any) {
	e := x.(*Entry)
	e.idx = len(*q)
	*q = append(*q, e)
}
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.idx = -1
	*q = old[:len(old)-1]
	return e
}
