package breaker

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// refEvent is one recorded outcome in the reference model.
type refEvent struct {
	at time.Duration
	o  uint8
}

// refTally is the reference model of a window: it keeps every event since the
// last reset and recounts the window from scratch.
func refTally(events []refEvent, timed bool, size int, now time.Duration) tally {
	var t tally
	if timed {
		head := int64(now / time.Second)
		for _, e := range events {
			if int64(e.at/time.Second) > head-int64(size) {
				t.add(e.o, 1)
			}
		}
		return t
	}
	if len(events) > size {
		events = events[len(events)-size:]
	}
	for _, e := range events {
		t.add(e.o, 1)
	}
	return t
}

// refOver is the threshold rule in integer arithmetic.
func refOver(t tally, minCalls, failureRate, slowRate int) bool {
	if t.total == 0 || t.total < minCalls {
		return false
	}
	return t.failures*100 >= failureRate*t.total || t.slow*100 >= slowRate*t.total
}

// FuzzWindow drives random outcome sequences, time steps and resets through the
// count and time windows and checks every tally and trip decision against the
// reference model.
func FuzzWindow(f *testing.F) {
	f.Add(byte(0), byte(5), byte(3), byte(50), byte(100), []byte{1, 1, 0, 1, 0, 0, 1, 3, 2})
	f.Add(byte(1), byte(3), byte(2), byte(50), byte(60), []byte{1, 0x41, 0x81, 2, 0xff, 3, 0xc1, 1})
	f.Add(byte(1), byte(1), byte(1), byte(100), byte(1), []byte{0, 0x40, 0x40, 1, 0xfe, 2})
	f.Add(byte(0), byte(1), byte(9), byte(1), byte(100), []byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, kind, size, minCalls, failureRate, slowRate byte, ops []byte) {
		timed := kind&1 == 1
		n := int(size%10) + 1
		mc := int(minCalls%12) + 1
		fr := int(failureRate%100) + 1
		sr := int(slowRate%100) + 1
		wt := WindowCount
		if timed {
			wt = WindowTime
		}
		w := newWindow(wt, n)
		var now time.Duration
		var events []refEvent
		for i, op := range ops {
			if op == 0xff {
				w.reset(now)
				events = events[:0]
				continue
			}
			// The high bits advance the clock by 0..63 quarter-seconds.
			now += time.Duration(op>>2) * 250 * time.Millisecond
			o := op & 3 // bitFailure | bitSlow
			got := w.record(o, now)
			events = append(events, refEvent{now, o})
			want := refTally(events, timed, n, now)
			if got != want {
				t.Fatalf("op %d (%#x) at %v, %v window of %d: tally %+v, want %+v", i, op, now, wt, n, got, want)
			}
			if g, r := got.over(mc, float64(fr), float64(sr)), refOver(want, mc, fr, sr); g != r {
				t.Fatalf("op %d: over(min %d, %d%%, %d%%) of %+v = %v, want %v", i, mc, fr, sr, got, g, r)
			}
		}
	})
}

func TestConfigDefaults(t *testing.T) {
	s, err := (&Config{}).settings()
	if err != nil {
		t.Fatal(err)
	}
	want := settings{
		windowType: WindowCount, windowSize: 20, minCalls: 5, failureRate: 50, slowRate: 100,
		slowDuration: 120 * time.Second, openDuration: 30 * time.Second, halfOpenCalls: 3,
		maxAttempts: 2, boInitial: 2 * time.Second, boMax: 30 * time.Second, boMultiplier: 2,
		maxRetryAfter: 60 * time.Second, budgetPercent: 20, minRetryConc: 3,
		minTryTime: 100 * time.Millisecond, timeout: 120 * time.Second, perTryTimeout: 0,
	}
	if s.classifier == nil {
		t.Error("Config{} has no classifier")
	}
	s.classifier = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Config{} settings:\n got %+v\nwant %+v", s, want)
	}
}

func TestMinimumCallsCappedByCountWindow(t *testing.T) {
	s, err := (&Config{WindowSize: 3}).settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.minCalls != 3 {
		t.Errorf("count window of 3 with default MinimumCalls: minCalls %d, want 3", s.minCalls)
	}
	s, err = (&Config{WindowType: WindowTime, WindowSize: 3}).settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.minCalls != 5 {
		t.Errorf("time window: minCalls %d, want 5 (not capped)", s.minCalls)
	}
}

func TestReportError(t *testing.T) {
	if !strings.HasPrefix(reportExcluded.Error(), "breaker:") {
		t.Errorf("report error %q", reportExcluded.Error())
	}
}
