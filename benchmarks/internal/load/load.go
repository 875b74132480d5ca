package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/infermesh/infermesh/benchmarks/internal/payload"
)

// Histogram bounds: 1 µs to 60 s at 3 significant digits, in microseconds.
const (
	histMin = 1
	histMax = 60_000_000
	histSig = 3
)

// NewHistogram returns an empty latency histogram in microseconds.
func NewHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSig) }

// Spec describes one run.
type Spec struct {
	// Client, Target, Payload and Compression pick what is sent where and how.
	Client      Client
	Target      Target
	Payload     payload.Kind
	Compression Compression
	// Concurrency is the number of workers, each with one request in flight.
	Concurrency int
	// MaxRequests bounds the measured requests (across workers).
	MaxRequests int
	// Duration bounds the measured phase.
	Duration time.Duration
	// WarmupPerWorker is how many requests each worker makes before the measured phase.
	WarmupPerWorker int
	// RequestTimeout bounds each request. Zero means 10 s.
	RequestTimeout time.Duration
	// Mark, when set, is called after the warm-up and before the measured phase, with every
	// worker waiting.
	Mark func()
	// End, when set, is called right after the measured phase, before the client is closed.
	End func()
}

// Result is what a run measured.
type Result struct {
	// Requests and Errors count the measured requests that succeeded and failed.
	Requests, Errors int64
	// FirstError describes the first failure, or is empty.
	FirstError string
	// Elapsed is the measured phase's wall time.
	Elapsed time.Duration
	// Hist holds the latencies of the successful measured requests, in microseconds.
	Hist *hdrhistogram.Histogram
	// NewConns counts connections the client opened during the measured phase.
	NewConns int64
}

// RPS is successful requests per second of the measured phase.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Run performs the run s describes. It returns an error when the client cannot be built or
// the warm-up fails; failures in the measured phase are counted in the Result.
func Run(ctx context.Context, s Spec) (Result, error) {
	if s.Concurrency < 1 || s.MaxRequests < 1 || s.Duration <= 0 {
		return Result{}, fmt.Errorf("load: Concurrency %d, MaxRequests %d and Duration %v must be positive", s.Concurrency, s.MaxRequests, s.Duration)
	}
	if s.RequestTimeout <= 0 {
		s.RequestTimeout = 10 * time.Second
	}
	var conns atomic.Int64
	c, err := newCaller(s.Client, s.Target, s.Payload, s.Compression, &conns)
	if err != nil {
		return Result{}, err
	}
	defer c.close()

	one := func() (time.Duration, error) {
		rctx, cancel := context.WithTimeout(ctx, s.RequestTimeout)
		defer cancel()
		start := time.Now()
		err := c.call(rctx)
		return time.Since(start), err
	}

	// Warm-up, every worker at once so the pool grows to the concurrency.
	var wg sync.WaitGroup
	warmErrs := make([]error, s.Concurrency)
	for w := range s.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range s.WarmupPerWorker {
				if _, err := one(); err != nil {
					warmErrs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(warmErrs...); err != nil {
		return Result{}, fmt.Errorf("warm-up: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}

	if s.Mark != nil {
		s.Mark()
	}
	conns.Store(0)
	var issued atomic.Int64
	hists := make([]*hdrhistogram.Histogram, s.Concurrency)
	okN := make([]int64, s.Concurrency)
	errN := make([]int64, s.Concurrency)
	firstErr := make([]error, s.Concurrency)
	start := time.Now()
	deadline := start.Add(s.Duration)
	for w := range s.Concurrency {
		hists[w] = NewHistogram()
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := hists[w]
			for issued.Add(1) <= int64(s.MaxRequests) && time.Now().Before(deadline) && ctx.Err() == nil {
				d, err := one()
				if err != nil {
					errN[w]++
					if firstErr[w] == nil {
						firstErr[w] = err
					}
					continue
				}
				okN[w]++
				us := d.Microseconds()
				if us < histMin {
					us = histMin
				}
				_ = h.RecordValue(min(us, histMax))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if s.End != nil {
		s.End()
	}
	r := Result{Elapsed: elapsed, Hist: NewHistogram(), NewConns: conns.Load()}
	for w := range s.Concurrency {
		r.Hist.Merge(hists[w])
		r.Requests += okN[w]
		r.Errors += errN[w]
		if firstErr[w] != nil && r.FirstError == "" {
			r.FirstError = firstErr[w].Error()
		}
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	return r, nil
}
