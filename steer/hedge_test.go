package steer_test

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/infermesh/infermesh/steer"
)

func mustHedger(t testing.TB, c steer.HedgeConfig) *steer.Hedger {
	t.Helper()
	h, err := steer.NewHedger(c)
	if err != nil {
		t.Fatalf("NewHedger: %v", err)
	}
	return h
}

// Delay is the nearest-rank quantile of the last Window samples, checked
// after every sample against a sort of those samples, with the rank computed
// in integers (ceil(num×n/den)).
func TestHedgerQuantileMatchesSortedReference(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		num, den  int // the quantile, num/den
		window    int
		minSample int
	}{
		{95, 100, 0, 0}, {50, 100, 100, 1}, {90, 100, 37, 1}, {99, 100, 256, 5},
		{1, 1, 64, 1}, {1, 3, 30, 1}, {999, 1000, 1000, 1},
	} {
		q := float64(tt.num) / float64(tt.den)
		h := mustHedger(t, steer.HedgeConfig{Quantile: q, Window: tt.window, MinSamples: tt.minSample, MinDelay: time.Nanosecond, MaxDelay: time.Hour})
		window := tt.window
		if window == 0 {
			window = steer.DefaultHedgeWindow
		}
		minSamples := tt.minSample
		if minSamples == 0 {
			minSamples = steer.DefaultHedgeMinSamples
		}
		rng := rand.New(rand.NewPCG(uint64(tt.num), uint64(tt.window)))
		var all []time.Duration
		for k := range 3 * window {
			d := time.Duration(1+rng.Int64N(int64(10*time.Second))) / time.Millisecond * time.Millisecond
			if k%7 == 0 && len(all) > 0 {
				d = all[rng.IntN(len(all))] // repeats, so equal samples are covered
			}
			h.Observe("b", d)
			all = append(all, d)

			recent := slices.Clone(all[max(0, len(all)-window):])
			slices.Sort(recent)
			want := time.Hour
			if n := len(recent); n >= minSamples {
				rank := (tt.num*n + tt.den - 1) / tt.den
				want = recent[max(rank, 1)-1]
			}
			if got := h.Delay("b"); got != want {
				t.Fatalf("q %d/%d, window %d, after %d samples: Delay = %v, want %v", tt.num, tt.den, window, k+1, got, want)
			}
		}
	}
}

func TestHedgerFloorAndCeiling(t *testing.T) {
	t.Parallel()
	h := mustHedger(t, steer.HedgeConfig{})
	for range 100 {
		h.Observe("fast", time.Millisecond)
		h.Observe("slow", time.Minute)
		h.Observe("negative", -time.Second)
		h.Observe("ok", 700*time.Millisecond)
	}
	for name, want := range map[string]time.Duration{
		"fast":     steer.DefaultHedgeMinDelay,
		"slow":     steer.DefaultHedgeMaxDelay,
		"negative": steer.DefaultHedgeMinDelay,
		"ok":       700 * time.Millisecond,
		"unknown":  steer.DefaultHedgeMaxDelay,
	} {
		if got := h.Delay(name); got != want {
			t.Errorf("Delay(%q) = %v, want %v", name, got, want)
		}
	}
	custom := mustHedger(t, steer.HedgeConfig{MinDelay: 20 * time.Millisecond, MaxDelay: 2 * time.Second})
	for range 50 {
		custom.Observe("fast", time.Millisecond)
		custom.Observe("slow", time.Minute)
	}
	if got := custom.Delay("fast"); got != 20*time.Millisecond {
		t.Errorf("custom floor: Delay = %v", got)
	}
	if got := custom.Delay("slow"); got != 2*time.Second {
		t.Errorf("custom ceiling: Delay = %v", got)
	}
}

// With fewer than MinSamples samples, Delay is MaxDelay; from MinSamples on,
// the quantile.
func TestHedgerTooFewSamples(t *testing.T) {
	t.Parallel()
	h := mustHedger(t, steer.HedgeConfig{})
	for k := 1; k <= steer.DefaultHedgeMinSamples; k++ {
		h.Observe("b", 300*time.Millisecond)
		want := steer.DefaultHedgeMaxDelay
		if k == steer.DefaultHedgeMinSamples {
			want = 300 * time.Millisecond
		}
		if got := h.Delay("b"); got != want {
			t.Fatalf("after %d samples: Delay = %v, want %v", k, got, want)
		}
	}
	// MinSamples is capped at Window, so a small window still answers.
	small := mustHedger(t, steer.HedgeConfig{Window: 5})
	for range 5 {
		small.Observe("b", 300*time.Millisecond)
	}
	if got := small.Delay("b"); got != 300*time.Millisecond {
		t.Errorf("Window 5 after 5 samples: Delay = %v", got)
	}
}

// Old samples leave the window: a backend that was slow and is now fast gets
// a short delay once the window has turned over.
func TestHedgerForgetsOldSamples(t *testing.T) {
	t.Parallel()
	h := mustHedger(t, steer.HedgeConfig{Window: 100})
	for range 100 {
		h.Observe("b", 5*time.Second)
	}
	for k := range 100 {
		h.Observe("b", 200*time.Millisecond)
		// p95 of 100 is the 95th smallest: still slow while 6 or more slow
		// samples remain.
		want := 5 * time.Second
		if k+1 >= 95 {
			want = 200 * time.Millisecond
		}
		if got := h.Delay("b"); got != want {
			t.Fatalf("after %d fast samples: Delay = %v, want %v", k+1, got, want)
		}
	}
}

func TestHedgerConcurrent(t *testing.T) {
	t.Parallel()
	h := mustHedger(t, steer.HedgeConfig{Window: 64})
	names := []string{"a", "b", "c"}
	value := map[string]time.Duration{"a": 150 * time.Millisecond, "b": 400 * time.Millisecond, "c": 2 * time.Second}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			for k := range 5000 {
				name := names[(g+k)%3]
				if k < 4000 {
					h.Observe(name, time.Duration(rng.Int64N(int64(20*time.Second))))
				} else {
					h.Observe(name, value[name])
				}
			}
		})
	}
	var bad []time.Duration
	var mu sync.Mutex
	for range 2 {
		wg.Go(func() {
			for k := range 5000 {
				if d := h.Delay(names[k%3]); d < steer.DefaultHedgeMinDelay || d > steer.DefaultHedgeMaxDelay {
					mu.Lock()
					bad = append(bad, d)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("Delay out of [MinDelay, MaxDelay]: %v", bad[:min(len(bad), 5)])
	}
	// Each backend's last 64 samples are all its fixed value (each goroutine
	// sent it more than 64 times to each backend at the end).
	for _, name := range names {
		if got := h.Delay(name); got != value[name] {
			t.Errorf("Delay(%q) = %v, want %v", name, got, value[name])
		}
	}
}
