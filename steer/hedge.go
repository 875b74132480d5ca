package steer

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [HedgeConfig].
const (
	// DefaultHedgeQuantile hedges a call once it is slower than 95% of the
	// backend's recent calls, so about one call in twenty is hedged ("The
	// Tail at Scale", Dean and Barroso).
	DefaultHedgeQuantile = 0.95
	// DefaultHedgeWindow keeps the last 256 samples per backend: seconds of
	// traffic at thousands of calls per second, minutes at a few per second.
	DefaultHedgeWindow = 256
	// DefaultHedgeMinSamples is how many samples a backend needs before its
	// quantile is trusted; 20 is the fewest in which p95 is not the maximum.
	DefaultHedgeMinSamples = 20
	// DefaultHedgeMinDelay is the shortest delay: below about 100 ms a hedge
	// races the network and the server's queue rather than a slow replica,
	// and mostly adds load.
	DefaultHedgeMinDelay = 100 * time.Millisecond
	// DefaultHedgeMaxDelay is the longest delay, and the delay of a backend
	// with too few samples: a first chunk later than 10 s is a stuck call for
	// most models (raise it for reasoning models that think before their
	// first content chunk).
	DefaultHedgeMaxDelay = 10 * time.Second
)

// maxHedgeWindow bounds HedgeConfig.Window, so a typo cannot allocate
// gigabytes.
const maxHedgeWindow = 1 << 16

// HedgeConfig configures a [Hedger]. The zero value gives the documented
// defaults; [NewHedger] rejects an invalid value with an error naming the
// field.
type HedgeConfig struct {
	// Quantile of the recent times to first chunk after which a call is
	// hedged, in (0,1]. 0 means DefaultHedgeQuantile (p95).
	Quantile float64
	// Window is how many of each backend's most recent samples are kept, in
	// [1, 65536]. 0 means DefaultHedgeWindow.
	Window int
	// MinSamples is how many samples a backend needs before Delay uses them;
	// with fewer, Delay returns MaxDelay. 0 means DefaultHedgeMinSamples;
	// capped at Window.
	MinSamples int
	// MinDelay is the floor of Delay. 0 means DefaultHedgeMinDelay.
	MinDelay time.Duration
	// MaxDelay is the ceiling of Delay, and its value while a backend has too
	// few samples; at least MinDelay. 0 means DefaultHedgeMaxDelay, or
	// MinDelay if that is longer.
	MaxDelay time.Duration
}

// hedgeSettings are a validated HedgeConfig with the defaults filled in.
type hedgeSettings struct {
	quantile   float64
	window     int
	minSamples int
	minDelay   time.Duration
	maxDelay   time.Duration
}

func (c *HedgeConfig) settings() (hedgeSettings, error) {
	s := hedgeSettings{
		quantile: cmp.Or(c.Quantile, DefaultHedgeQuantile),
		window:   cmp.Or(c.Window, DefaultHedgeWindow),
		minDelay: cmp.Or(c.MinDelay, DefaultHedgeMinDelay),
	}
	s.minSamples = min(cmp.Or(c.MinSamples, DefaultHedgeMinSamples), s.window)
	s.maxDelay = cmp.Or(c.MaxDelay, max(DefaultHedgeMaxDelay, s.minDelay))
	switch {
	case math.IsNaN(s.quantile) || s.quantile <= 0 || s.quantile > 1:
		return s, fieldErr("HedgeConfig.Quantile", c.Quantile, "is out of range (0,1]")
	case s.window < 1 || s.window > maxHedgeWindow:
		return s, fieldErr("HedgeConfig.Window", c.Window, fmt.Sprintf("is out of range [1,%d]", maxHedgeWindow))
	case c.MinSamples < 0:
		return s, fieldErr("HedgeConfig.MinSamples", c.MinSamples, "is negative")
	case c.MinDelay < 0:
		return s, fieldErr("HedgeConfig.MinDelay", c.MinDelay, "is negative")
	case c.MaxDelay < 0:
		return s, fieldErr("HedgeConfig.MaxDelay", c.MaxDelay, "is negative")
	case s.maxDelay < s.minDelay:
		return s, fmt.Errorf("steer: HedgeConfig.MaxDelay %v is below HedgeConfig.MinDelay %v", s.maxDelay, s.minDelay)
	}
	return s, nil
}

// Hedger chooses how long a call waits for its first chunk before a hedge
// (the same request to another backend) starts: a quantile of the backend's
// recent times to first chunk, clamped to [MinDelay, MaxDelay].
//
// A Hedger keeps HedgeConfig.Window samples for each backend name it has
// been given (16 bytes per sample), so it is meant for a fixed set of names,
// such as a [Router]'s backends. It is safe for concurrent use: Delay takes
// no lock; Observe locks the one backend's samples.
type Hedger struct {
	s       hedgeSettings
	mu      sync.Mutex                            // serialises adding a backend
	windows atomic.Pointer[map[string]*latencies] // replaced, never changed
}

// NewHedger returns a Hedger for c, or an error that names the first field of
// c that is invalid.
func NewHedger(c HedgeConfig) (*Hedger, error) {
	s, err := c.settings()
	if err != nil {
		return nil, err
	}
	h := &Hedger{s: s}
	h.windows.Store(&map[string]*latencies{})
	return h, nil
}

// Observe records a call's time to first chunk on backend: to its first
// content chunk for a stream, to its response otherwise. A negative duration
// counts as 0.
//
// An attempt cancelled before its first chunk (it lost a hedge race) should
// be observed too, with the time it had waited: a lower bound of its time to
// first chunk. Leaving it out would drop the slow calls from the samples,
// lower the quantile, and hedge more and more calls.
func (h *Hedger) Observe(backend string, ttfc time.Duration) {
	h.latencies(backend).add(max(ttfc, 0), &h.s)
}

// Delay returns how long a call to backend should wait for its first chunk
// before it is hedged: the Quantile (nearest rank) of the backend's last
// Window samples, clamped to [MinDelay, MaxDelay]; MaxDelay while it has
// fewer than MinSamples samples.
func (h *Hedger) Delay(backend string) time.Duration {
	if l := (*h.windows.Load())[backend]; l != nil {
		return time.Duration(l.delay.Load())
	}
	return h.s.maxDelay
}

// latencies returns backend's samples, adding the backend if it is new.
func (h *Hedger) latencies(backend string) *latencies {
	if l := (*h.windows.Load())[backend]; l != nil {
		return l
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := *h.windows.Load()
	if l := m[backend]; l != nil {
		return l
	}
	l := &latencies{
		order:  make([]time.Duration, 0, h.s.window),
		sorted: make([]time.Duration, 0, h.s.window),
	}
	l.delay.Store(int64(h.s.maxDelay))
	next := maps.Clone(m)
	next[backend] = l
	h.windows.Store(&next)
	return l
}

// latencies are one backend's recent samples, kept twice: in arrival order
// (a ring, to know which sample is the oldest) and sorted (so any quantile is
// one index away). Adding a sample costs two binary searches and two
// memmoves of at most Window values, a few tens of nanoseconds at the default.
type latencies struct {
	mu     sync.Mutex
	order  []time.Duration // a ring once full; next is its oldest sample
	next   int
	sorted []time.Duration
	delay  atomic.Int64 // Delay's answer, as of the last add
}

func (l *latencies) add(d time.Duration, s *hedgeSettings) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.order) < cap(l.order) {
		l.order = append(l.order, d)
	} else {
		oldest := l.order[l.next]
		l.order[l.next] = d
		l.next = (l.next + 1) % len(l.order)
		i, _ := slices.BinarySearch(l.sorted, oldest)
		l.sorted = slices.Delete(l.sorted, i, i+1)
	}
	i, _ := slices.BinarySearch(l.sorted, d)
	l.sorted = slices.Insert(l.sorted, i, d)
	l.delay.Store(int64(s.delay(l.sorted)))
}

// delay is Delay's answer for the sorted samples.
func (s *hedgeSettings) delay(sorted []time.Duration) time.Duration {
	if len(sorted) < s.minSamples {
		return s.maxDelay
	}
	// Nearest rank: the smallest sample with at least Quantile of the samples
	// at or below it. The tolerance keeps 0.95×100 from rounding up to 96.
	rank := int(math.Ceil(s.quantile*float64(len(sorted)) - 1e-9))
	v := sorted[max(rank, 1)-1]
	return min(max(v, s.minDelay), s.maxDelay)
}
