package quota_test

import (
	"context"
	"testing"

	"github.com/infermesh/infermesh/quota"
)

// benchLimits never refuse, so the benchmarks measure admission itself.
var benchLimits = map[string]quota.Limits{"llm": {RequestsPerMinute: 1 << 30, TokensPerMinute: 1 << 40, MaxConcurrent: 1 << 20}}

// benchReserveSettle admits one call per iteration: Reserve (a request, 1200 tokens and a
// slot), then Settle with actual tokens.
func benchReserveSettle(b *testing.B, l *quota.Limiter, actual int) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, err := l.Reserve(ctx, "llm", 1200)
		if err != nil {
			b.Fatal(err)
		}
		r.Settle(actual)
	}
}

// BenchmarkReserveSettleLocal is one call's admission on local limits, with a true-up.
func BenchmarkReserveSettleLocal(b *testing.B) {
	benchReserveSettle(b, newLimiter(b, quota.Config{Limits: benchLimits}), 700)
}

// BenchmarkReserveSettleLocalParallel is the same from every core on one key.
func BenchmarkReserveSettleLocalParallel(b *testing.B) {
	l := newLimiter(b, quota.Config{Limits: benchLimits})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			r, err := l.Reserve(ctx, "llm", 1200)
			if err != nil {
				b.Error(err)
				return
			}
			r.Settle(700)
		}
	})
}

// BenchmarkReserveSettleShared is one admission against a local redis-server: one round
// trip (TestSharedOneRoundTripPerAdmission counts it). Settle uses the estimate, so the
// worker sends no true-up.
func BenchmarkReserveSettleShared(b *testing.B) {
	srv := startRedis(b)
	benchReserveSettle(b, newLimiter(b, quota.Config{Limits: benchLimits, Redis: srv.Client()}), 1200)
}
