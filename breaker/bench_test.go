package breaker_test

import (
	"context"
	"testing"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/sony/gobreaker/v2"
)

func noop(context.Context) (int, error) { return 1, nil }

// BenchmarkDo_PerTryTimeout is the success path with every layer active: the
// overall Timeout (default 120s) and a PerTryTimeout, so fn runs on its own
// goroutine under the time limiter.
func BenchmarkDo_PerTryTimeout(b *testing.B) {
	benchDo(b, breaker.Config{PerTryTimeout: 10 * time.Second})
}

// BenchmarkDo_NoTimeout is the success path with no time limit: fn runs on the
// caller's goroutine.
func BenchmarkDo_NoTimeout(b *testing.B) { benchDo(b, breaker.Config{Timeout: breaker.NoTimeout}) }

func benchDo(b *testing.B, c breaker.Config) {
	p, err := breaker.New(c)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := breaker.Do(ctx, p, noop); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGobreakerExecute is bare gobreaker on the same no-op, the baseline.
func BenchmarkGobreakerExecute(b *testing.B) {
	cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cb.Execute(func() (int, error) { return 1, nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTimeLimiterStdlib is a time limiter alone, built from a
// context.WithTimeout and a goroutine per call as the policy's is: with
// BenchmarkGobreakerExecute, the floor under BenchmarkDo_PerTryTimeout.
func BenchmarkTimeLimiterStdlib(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		go func() {
			noop(actx)
			cancel()
		}()
		<-actx.Done()
		cancel()
	}
}
