package deadline

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFiresAtDeadlinesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s Scheduler
		start := time.Now()
		var mu sync.Mutex
		var got []time.Duration
		record := func() {
			mu.Lock()
			got = append(got, time.Since(start))
			mu.Unlock()
		}
		s.After(3*time.Second, record)
		s.After(1*time.Second, record) // earlier than the armed one: re-arms
		s.After(2*time.Second, record)
		stopped := s.After(1500*time.Millisecond, func() { t.Error("a stopped entry fired") })
		if !stopped.Stop() {
			t.Fatal("Stop of a pending entry reported false")
		}
		time.Sleep(5 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
		if len(got) != len(want) {
			t.Fatalf("fired at %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("firing %d at %v, want %v", i, got[i], want[i])
			}
		}
		if stopped.Stop() {
			t.Error("a second Stop reported true")
		}
	})
}

func TestStopAfterFiring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s Scheduler
		var n atomic.Int32
		e := s.After(time.Second, func() { n.Add(1) })
		time.Sleep(2 * time.Second)
		if e.Stop() || n.Load() != 1 {
			t.Errorf("Stop after firing = true or fired %d times", n.Load())
		}
		// The scheduler keeps working after it ran empty.
		s.After(time.Second, func() { n.Add(1) })
		time.Sleep(2 * time.Second)
		if n.Load() != 2 {
			t.Errorf("fired %d times, want 2", n.Load())
		}
	})
}

func TestLaterDeadlinesDoNotRearm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s Scheduler
		state := func() (time.Time, int) {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.armed, len(s.q)
		}
		first := s.After(time.Minute, func() {})
		armed, _ := state()
		for i := range 100 {
			e := s.After(time.Minute+time.Duration(i)*time.Millisecond, func() {})
			e.Stop()
		}
		if now, _ := state(); now != armed {
			t.Errorf("later deadlines re-armed the timer: %v -> %v", armed, now)
		}
		first.Stop()
		time.Sleep(2 * time.Minute) // the timer fires once, finds nothing, stays idle
		if a, n := state(); !a.IsZero() || n != 0 {
			t.Errorf("armed %v with %d entries after running empty", a, n)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s Scheduler
		var fired, stopped atomic.Int32
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 200 {
					e := s.After(time.Duration(1+(g*200+i)%50)*time.Millisecond, func() { fired.Add(1) })
					if i%2 == 0 && e.Stop() {
						stopped.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		time.Sleep(time.Second)
		if fired.Load()+stopped.Load() != 1600 {
			t.Errorf("fired %d + stopped %d != 1600", fired.Load(), stopped.Load())
		}
	})
}
