package budgets

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/transport"
)

// heapCase is one client whose open streams are measured; file names its profile.
type heapCase struct {
	name, file string
	new        func() (*http.Client, error)
}

func heapCases() []heapCase {
	return []heapCase{
		{"net/http (default transport)", "stdlib", func() (*http.Client, error) {
			return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, nil
		}},
		{"net/http (transport preset)", "transport", func() (*http.Client, error) {
			tr, err := transport.New(transport.Config{})
			return &http.Client{Transport: tr}, err
		}},
		{"llmclient (defaults)", "llmclient", func() (*http.Client, error) { return llmclient.NewHTTPClient(llmclient.Config{}) }},
	}
}

// heapFigures is what one open stream holds, after a collection: live heap (HeapAlloc),
// heap spans in use (HeapInuse), goroutine stacks (StackInuse), and goroutines.
type heapFigures struct {
	heapAlloc, heapInuse, stack, goroutines float64
}

// heapPerStream opens n streams through hc to the hold server at url, each read to its
// first content chunk and held open, and returns what each holds on average: the difference
// between the process's memory with the streams open and before, after a collection each
// time. open bounds the streams being opened at once.
//
// With profile set, it writes a heap profile there while the streams are open.
func heapPerStream(ctx context.Context, hc *http.Client, url string, n, open int, profile string) (heapFigures, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute) // a stream that never opens fails
	defer cancel()
	s := newSDK(hc, url+"/v1", true)
	for range 2 { // the first stream initialises what every stream shares
		if err := holdOne(ctx, s, nil); err != nil {
			return heapFigures{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	hc.CloseIdleConnections()
	m0, g0 := settledMemory()
	release := make(chan struct{})
	ready := make(chan error, n)
	sem := make(chan struct{}, open)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			err := holdOne(ctx, s, func() {
				<-sem
				ready <- nil
				<-release
			})
			if err != nil {
				<-sem
				ready <- err
			}
		}()
	}
	var errs []error
	for range n {
		if err := <-ready; err != nil {
			errs = append(errs, err)
			break
		}
	}
	var m1 runtime.MemStats
	var g1 int
	if err := errors.Join(errs...); err == nil {
		m1, g1 = settledMemory()
		if profile != "" {
			errs = append(errs, writeHeapProfile(profile))
		}
	}
	close(release)
	wg.Wait()
	hc.CloseIdleConnections()
	if err := errors.Join(errs...); err != nil {
		return heapFigures{}, err
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	return heapFigures{
		heapAlloc:  per(m1.HeapAlloc, m0.HeapAlloc),
		heapInuse:  per(m1.HeapInuse, m0.HeapInuse),
		stack:      per(m1.StackInuse, m0.StackInuse),
		goroutines: float64(g1-g0) / float64(n),
	}, nil
}

// holdOne opens a stream, reads it to its first content chunk, calls held (if set) and
// closes the stream.
func holdOne(ctx context.Context, s *sdk, held func()) error {
	st, err := s.client.CreateChatCompletionStream(ctx, s.req)
	if err != nil {
		return err
	}
	defer st.Close()
	for range 10 {
		chunk, err := st.Recv()
		if err != nil {
			return err
		}
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			if held != nil {
				held()
			}
			return nil
		}
	}
	return errors.New("no content in the first 10 events")
}

// settledMemory returns the memory statistics and the goroutine count after two
// collections (the second frees what the first's finalizers released).
func settledMemory() (runtime.MemStats, int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m, runtime.NumGoroutine()
}

// measureHeap is budget 5: heap per open stream through llmclient against bare net/http,
// with go-openai's stream reader in both, against a hold server in another process. The
// clients take turns, rounds times.
//
// With profile set, it records every allocation and writes a heap profile of each client's
// open streams, in the first round, to profile.<client>.heap.
func measureHeap(ctx context.Context, n, rounds int, profile string) (verdict, error) {
	if profile != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	srv, err := startHold(ctx)
	if err != nil {
		return verdict{}, err
	}
	defer srv.stop()
	cases := heapCases()
	figs := make([][]heapFigures, rounds)
	for r := range rounds {
		figs[r] = make([]heapFigures, len(cases))
		for k := range cases {
			i := (r + k) % len(cases)
			hc, err := cases[i].new()
			if err != nil {
				return verdict{}, fmt.Errorf("%s: %w", cases[i].name, err)
			}
			write := ""
			if profile != "" && r == 0 {
				write = profile + "." + cases[i].file + ".heap"
			}
			if figs[r][i], err = heapPerStream(ctx, hc, srv.url, n, 64, write); err != nil {
				return verdict{}, fmt.Errorf("%s: %w", cases[i].name, err)
			}
		}
	}
	var lines []string
	for i, c := range cases {
		field := func(f func(heapFigures) float64) spread {
			vs := make([]float64, rounds)
			for r := range rounds {
				vs[r] = f(figs[r][i]) / 1024
			}
			return spreadOf(vs)
		}
		ha := field(func(h heapFigures) float64 { return h.heapAlloc })
		hi := field(func(h heapFigures) float64 { return h.heapInuse })
		st := field(func(h heapFigures) float64 { return h.stack })
		lines = append(lines, fmt.Sprintf("%-30s heap %6.2f KiB/stream (%.2f-%.2f), heap in use %6.2f KiB, stacks %6.2f KiB, %.2f goroutines/stream",
			c.name, ha.med, ha.lo, ha.hi, hi.med, st.med, figs[0][i].goroutines))
	}
	lines = append(lines, fmt.Sprintf("%d streams open at once, each read to its first content chunk; %d rounds", n, rounds))
	return verdict{
		name:   "heap per open stream",
		budget: "llmclient's heap per open stream <= bare net/http's (go-openai's stream reader in both)",
		ratio: perRound(figs, func(r []heapFigures) float64 {
			return r[2].heapAlloc / r[0].heapAlloc
		}),
		limit: 1,
		lines: lines,
	}, nil
}

// writeHeapProfile writes the heap profile (as of the last collection) to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = pprof.WriteHeapProfile(f)
	return errors.Join(err, f.Close())
}
