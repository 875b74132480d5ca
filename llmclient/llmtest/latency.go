package llmtest

import (
	"math"
	"math/rand/v2"
	"time"
)

// A Distribution draws a duration from the server's random source (see [WithRandomSource]), so that a
// sequence of requests sees the same delays on every run (given the same arrival order).
// It is called with the server's lock held: it must be quick and must not call the server.
// A negative result counts as 0.
type Distribution func(r *rand.Rand) time.Duration

// Fixed returns a Distribution that always yields d.
func Fixed(d time.Duration) Distribution {
	return func(*rand.Rand) time.Duration { return d }
}

// Uniform returns a Distribution uniform over [lo, hi). If hi <= lo it always yields lo.
func Uniform(lo, hi time.Duration) Distribution {
	return func(r *rand.Rand) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(r.Int64N(int64(hi-lo)))
	}
}

// LogNormal returns a log-normal Distribution with the given median and shape sigma (the
// standard deviation of the logarithm; 0.5 gives a p99 about 3.2 times the median), the
// long-tailed shape of real service latencies.
func LogNormal(median time.Duration, sigma float64) Distribution {
	return func(r *rand.Rand) time.Duration {
		return time.Duration(float64(median) * math.Exp(sigma*r.NormFloat64()))
	}
}

// delayer draws delays from its own random source, so that latency draws never shift the
// fault draws of the same source. It is guarded by Server.mu.
type delayer struct {
	rng *rand.Rand
}

func newDelayer(source uint64) *delayer {
	return &delayer{rng: rand.New(rand.NewPCG(source, 0x64656c6179))} // "delay"
}

// draw returns a delay from d (0 if d is nil), never negative.
func (s *Server) draw(d Distribution) time.Duration {
	if d == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(d(s.delays.rng), 0)
}
