package llmtest

import (
	"fmt"
	"math/rand/v2"
)

// A Rule picks the requests a [Fault] strikes: by route (Path), by number (Count) and by
// chance (Probability). A rule with only a Fault set strikes every request.
type Rule struct {
	// Path restricts the rule to requests for this exact URL path, such as
	// [PathChatCompletions] or [PathResponses]; empty matches every path.
	Path string
	// Fault is what happens to a request the rule strikes.
	Fault Fault
	// Count is the number of times the rule strikes before it is spent; 0 means no limit.
	Count int
	// Probability is the chance, from 0 to 1, that the rule strikes a matching request. The
	// draw comes from the server's random source, set by [WithRandomSource], so that a sequence of
	// requests sees the same faults on every run. 0 means 1: the rule strikes every matching
	// request (drop the rule to disable it).
	Probability float64
}

// A Phase is a named set of rules. For each request the server tries, in order, the faults
// queued by [Server.Enqueue] and then the phase's rules; the first that strikes decides the
// response, and a request no rule strikes is answered normally. [Server.SetPhase] switches
// phases while the server runs.
type Phase struct {
	// Name labels the phase in [Request.Phase]; it may be empty.
	Name string
	// Rules are tried in order.
	Rules []Rule
}

// Validate reports the first rule of p that holds an invalid value, naming the field and the
// value.
func (p Phase) Validate() error {
	for i, r := range p.Rules {
		if err := r.Fault.Validate(); err != nil {
			return fmt.Errorf("llmtest: Phase %q Rules[%d]: %w", p.Name, i, err)
		}
		if r.Count < 0 {
			return fmt.Errorf("llmtest: Phase %q Rules[%d].Count %d is negative", p.Name, i, r.Count)
		}
		if !(r.Probability >= 0 && r.Probability <= 1) { // also rejects NaN
			return fmt.Errorf("llmtest: Phase %q Rules[%d].Probability %v is outside 0 to 1", p.Name, i, r.Probability)
		}
	}
	return nil
}

// script holds the run-time fault state of a server. It is guarded by Server.mu.
type script struct {
	rng   *rand.Rand
	queue []Fault
	phase Phase
	fired []int // fired[i] counts the strikes of phase.Rules[i]
}

func newScript(source uint64, p Phase) *script {
	s := &script{rng: rand.New(rand.NewPCG(source, 0x6c6c6d74657374))} // "llmtest"
	s.setPhase(p)
	return s
}

func (s *script) setPhase(p Phase) {
	p.Rules = append([]Rule(nil), p.Rules...)
	for i := range p.Rules {
		p.Rules[i].Fault.Header = p.Rules[i].Fault.Header.Clone()
	}
	s.phase = p
	s.fired = make([]int, len(p.Rules))
}

// next returns the fault for a request to path, consuming a queued fault or a rule strike.
func (s *script) next(path string) Fault {
	if len(s.queue) > 0 {
		f := s.queue[0]
		s.queue[0] = Fault{} // drop references held by the backing array
		s.queue = s.queue[1:]
		return f
	}
	for i, r := range s.phase.Rules {
		if r.Path != "" && r.Path != path {
			continue
		}
		if r.Count > 0 && s.fired[i] >= r.Count {
			continue
		}
		if r.Probability > 0 && r.Probability < 1 && s.rng.Float64() >= r.Probability {
			continue
		}
		s.fired[i]++
		return r.Fault
	}
	return Fault{}
}
