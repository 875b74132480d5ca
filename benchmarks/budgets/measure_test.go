package budgets

import (
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// contender is one side of a comparison: call makes one call.
type contender struct {
	name string
	call func() error
}

// sample is what one contender cost over one round: its calls, the process CPU time
// (user and system, every thread: the runtime's GC work too), the wall time, the heap
// allocations, each turn's CPU time per call, and each call's wall time.
type sample struct {
	calls         int
	cpu, wall     time.Duration
	allocs, bytes uint64
	turns         []time.Duration
	lat           []time.Duration
}

func (s sample) wallPerCall() time.Duration { return s.wall / time.Duration(max(s.calls, 1)) }

// plan says how long a comparison runs: rounds of blocks calls per contender each, the
// contenders taking turns block by block, and warmup calls of each before the first round.
type plan struct {
	rounds, blocks, block, warmup int
}

// interleave runs the contenders in turns of p.block calls, p.blocks turns each per round,
// starting each turn with the next contender, so that a change in the machine's load hits
// them alike. It returns each round's sample of each contender ([round][contender]).
//
// The process CPU of a turn includes the garbage collection that runs during it. A
// collection starts when the heap has grown by a set amount, so over many turns the
// collections fall on the contenders in proportion to what they allocate.
func interleave(cs []contender, p plan) ([][]sample, error) {
	for _, c := range cs {
		for range p.warmup {
			if err := c.call(); err != nil {
				return nil, fmt.Errorf("%s: warm-up: %w", c.name, err)
			}
		}
	}
	out := make([][]sample, p.rounds)
	var ms0, ms1 runtime.MemStats
	for r := range out {
		out[r] = make([]sample, len(cs))
		for i := range cs {
			out[r][i].lat = make([]time.Duration, 0, p.blocks*p.block)
		}
		for b := range p.blocks {
			for k := range cs {
				i := (b + k) % len(cs)
				s := &out[r][i]
				runtime.ReadMemStats(&ms0)
				cpu0, wall0 := processCPU(), time.Now()
				for range p.block {
					start := time.Now()
					if err := cs[i].call(); err != nil {
						return nil, fmt.Errorf("%s: %w", cs[i].name, err)
					}
					s.lat = append(s.lat, time.Since(start))
				}
				s.wall += time.Since(wall0)
				cpu := processCPU() - cpu0
				s.cpu += cpu
				s.turns = append(s.turns, cpu/time.Duration(p.block))
				runtime.ReadMemStats(&ms1)
				s.calls += p.block
				s.allocs += ms1.Mallocs - ms0.Mallocs
				s.bytes += ms1.TotalAlloc - ms0.TotalAlloc
			}
		}
	}
	return out, nil
}

// processCPU returns the CPU time this process has used, user and system, every thread.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// spread is a median with the lowest and highest of the values it came from.
type spread struct{ med, lo, hi float64 }

func spreadOf(vs []float64) spread {
	if len(vs) == 0 {
		return spread{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{med: med, lo: s[0], hi: s[len(s)-1]}
}

// perRound applies f to every round's figures.
func perRound[S any](rounds [][]S, f func(r []S) float64) spread {
	vs := make([]float64, len(rounds))
	for i, r := range rounds {
		vs[i] = f(r)
	}
	return spreadOf(vs)
}

// turnCPU returns the median CPU time per call of contender i's turns in round r.
func turnCPU(r []sample, i int) float64 {
	vs := make([]float64, len(r[i].turns))
	for b, d := range r[i].turns {
		vs[b] = µs(d)
	}
	return spreadOf(vs).med
}

// addedCPU returns the median, over the turns of round r, of the CPU time per call that
// contender i took more than contender j in the turn next to it. A turn slowed by something
// else on the machine moves the median little.
func addedCPU(r []sample, i, j int) float64 {
	vs := make([]float64, len(r[i].turns))
	for b := range r[i].turns {
		vs[b] = µs(r[i].turns[b] - r[j].turns[b])
	}
	return spreadOf(vs).med
}

// turnsRatio applies f to the turns of every round together, and to each round's: the
// estimate comes from every turn (a median of all the turns' figures), its range from the
// rounds.
func turnsRatio(rounds [][]sample, f func(r []sample) float64) spread {
	all := make([]sample, len(rounds[0]))
	for _, r := range rounds {
		for i := range r {
			all[i].turns = append(all[i].turns, r[i].turns...)
		}
	}
	byRound := perRound(rounds, f)
	return spread{med: f(all), lo: byRound.lo, hi: byRound.hi}
}

// turnsAbout says what turnsRatio's figures are.
const turnsAbout = "medians over every turn; range: the rounds'"

// µs returns d in microseconds.
func µs(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// quantile returns the q-quantile (0 to 1) of ds, which it sorts.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(int(q*float64(len(ds))), len(ds)-1)]
}

// allLatencies returns contender i's call latencies over every round.
func allLatencies(rounds [][]sample, i int) []time.Duration {
	var out []time.Duration
	for _, r := range rounds {
		out = append(out, r[i].lat...)
	}
	return out
}

// describe returns one line of a contender's figures: CPU per call (the median of every
// turn, with the range of the rounds'), wall time per call (the median of the rounds'), heap
// allocations per call.
func describe(label string, rounds [][]sample, i int) string {
	cpu := turnsRatio(rounds, func(r []sample) float64 { return turnCPU(r, i) })
	wall := perRound(rounds, func(r []sample) float64 { return µs(r[i].wallPerCall()) })
	var calls int
	var allocs, bytes uint64
	for _, r := range rounds {
		calls += r[i].calls
		allocs += r[i].allocs
		bytes += r[i].bytes
	}
	return fmt.Sprintf("%-34s CPU %7.2f µs/call (%.2f-%.2f)  wall %7.2f µs/call  %6.0f B/call %5.1f allocs/call  %d calls",
		label, cpu.med, cpu.lo, cpu.hi, wall.med, float64(bytes)/float64(max(calls, 1)), float64(allocs)/float64(max(calls, 1)), calls)
}
