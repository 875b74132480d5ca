package load

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/benchmarks/internal/payload"
	"github.com/infermesh/infermesh/benchmarks/internal/upstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunEveryClient(t *testing.T) {
	up, err := upstream.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	tests := []struct {
		client Client
		h2c    bool
		pl     payload.Kind
		comp   Compression
	}{
		{Stdlib, false, payload.KindChat, None},
		{Stdlib, true, payload.KindChat, None},
		{Stdlib, false, payload.KindChat, Gzip},
		{Transport, false, payload.KindChat, None},
		{Transport, true, payload.KindChat, Zstd},
		{Transport, false, payload.KindChat, Gzip},
		{LLMClient, false, payload.KindChat, None},
		{LLMClient, true, payload.KindChat, Zstd},
		{GRPCDefault, false, payload.KindChat, None},
		{GRPCDefault, false, payload.KindChat, Gzip},
		{GRPCInfer, false, payload.KindChat, None},
		{GRPCInfer, false, payload.KindChat, Zstd},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/h2c=%v/%s/%s", tt.client, tt.h2c, tt.pl, tt.comp), func(t *testing.T) {
			addr := up.HTTPAddr
			if tt.client.IsGRPC() {
				addr = up.GRPCAddr
			}
			before := up.Stats()
			marks, ends := 0, 0
			res, err := Run(context.Background(), Spec{
				Client: tt.client, Target: Target{Addr: addr, H2C: tt.h2c}, Payload: tt.pl, Compression: tt.comp,
				Concurrency: 2, MaxRequests: 40, Duration: 5 * time.Second, WarmupPerWorker: 2,
				Mark: func() { marks++ }, End: func() { ends++ },
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Requests != 40 {
				t.Fatalf("%d requests, %d errors (first: %s); want 40 and 0", res.Requests, res.Errors, res.FirstError)
			}
			if res.Hist.TotalCount() != 40 || res.Hist.ValueAtQuantile(50) < 1 || res.RPS() <= 0 {
				t.Errorf("histogram holds %d values, p50 %d; rps %v", res.Hist.TotalCount(), res.Hist.ValueAtQuantile(50), res.RPS())
			}
			if marks != 1 || ends != 1 {
				t.Errorf("Mark called %d times, End %d; want 1 each", marks, ends)
			}
			after := up.Stats()
			served := after.HTTPRequests - before.HTTPRequests + after.GRPCRequests - before.GRPCRequests
			if served != 44 || after.BadRequests != before.BadRequests {
				t.Errorf("upstream served %d requests (%d bad), want 44 (2x2 warm-up + 40)", served, after.BadRequests-before.BadRequests)
			}
			// Pooled clients never churn: at most one connection per worker in all (the warm-up
			// may have needed fewer); gRPC multiplexes the one from the warm-up.
			if tt.client != Stdlib && res.NewConns > 2 || tt.client.IsGRPC() && res.NewConns != 0 {
				t.Errorf("%d new connections in the measured phase", res.NewConns)
			}
		})
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	up, err := upstream.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	start := time.Now()
	res, err := Run(context.Background(), Spec{Client: Transport, Target: Target{Addr: up.HTTPAddr}, Payload: payload.KindChat,
		Compression: None, Concurrency: 2, MaxRequests: 1 << 30, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second || res.Elapsed < 200*time.Millisecond {
		t.Errorf("run took %v (measured %v), want about 200ms", el, res.Elapsed)
	}
	if res.Requests == 0 || res.Requests >= 1<<30 {
		t.Errorf("%d requests", res.Requests)
	}
}

func TestRunRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := Run(ctx, Spec{Client: Transport, Concurrency: 0, MaxRequests: 1, Duration: time.Second}); err == nil {
		t.Error("Concurrency 0: want an error")
	}
	base := Spec{Target: Target{Addr: "127.0.0.1:1"}, Payload: payload.KindChat, Concurrency: 1, MaxRequests: 1, Duration: time.Second}
	for _, s := range []Spec{
		func() Spec { s := base; s.Client = Stdlib; s.Compression = Zstd; return s }(),
		func() Spec { s := base; s.Client = GRPCDefault; s.Compression = Zstd; return s }(),
		func() Spec { s := base; s.Client = "curl"; return s }(),
		func() Spec { s := base; s.Client = Transport; s.Payload = "huge"; return s }(),
	} {
		if _, err := Run(ctx, s); err == nil {
			t.Errorf("%s %s %s: want an error", s.Client, s.Payload, s.Compression)
		}
	}
	// A warm-up that cannot connect is an error, not a measured failure.
	s := base
	s.Client, s.Compression, s.WarmupPerWorker, s.RequestTimeout = Transport, None, 1, time.Second
	if _, err := Run(ctx, s); err == nil {
		t.Error("warm-up against a closed port: want an error")
	}
}
