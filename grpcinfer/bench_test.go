package grpcinfer_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	pb "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
	"github.com/infermesh/infermesh/tracing"
)

// BenchmarkModelInfer measures one unary ModelInfer with a 1 KiB raw FP32 tensor over loopback
// TCP, through bare grpc-go and through the full stacks of this package (every server
// interceptor with a concurrency limit, minimum deadline, logger, usage and a tracing
// Instrumenter; the health gate; the client preset with its service config, a breaker
// Policy, a method policy and a tracing Instrumenter, with no OpenTelemetry SDK installed). Both serve the same oip.Server.
// It reports ns/op and the median latency (p50-ns); the interleaved sub-benchmark alternates
// the two call by call and reports both medians and the overhead in percent.
func BenchmarkModelInfer(b *testing.B) {
	model, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{identity{}}})
	if err != nil {
		b.Fatal(err)
	}
	x := make([]float32, 256) // 1 KiB
	for i := range x {
		x[i] = float32(i)
	}
	req, err := oip.EncodeRequest(&oip.InferRequest{ModelName: "identity", Raw: true, Inputs: []oip.Tensor{oip.NewTensor("x", []int64{256}, x)}})
	if err != nil {
		b.Fatal(err)
	}
	in, err := tracing.New(tracing.Config{})
	if err != nil {
		b.Fatal(err)
	}

	// connect serves the model with sopts (plus register) and returns a client dialled with
	// dopts, after warming the connection, pools and buffers up.
	connect := func(b *testing.B, sopts []grpc.ServerOption, dopts []grpc.DialOption, register func(*grpc.Server)) pb.GRPCInferenceServiceClient {
		srv := startServer(b, nil, sopts, func(gs *grpc.Server) { model.Register(gs); register(gs) })
		cc, err := grpc.NewClient(srv.Addr, append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		client := pb.NewGRPCInferenceServiceClient(cc)
		for range 100 {
			if _, err := client.ModelInfer(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
		return client
	}
	bare := func(b *testing.B) pb.GRPCInferenceServiceClient {
		return connect(b, nil, nil, func(*grpc.Server) {})
	}
	full := func(b *testing.B) pb.GRPCInferenceServiceClient {
		sopts, err := grpcinfer.ServerOptions(grpcinfer.ServerConfig{
			MaxConcurrentCalls: 64, MinRemainingDeadline: time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tracing: in,
		})
		if err != nil {
			b.Fatal(err)
		}
		// No method Timeout: a deadline costs a timer on both sides with bare grpc-go too.
		dopts, err := grpcinfer.DialOptions(grpcinfer.ClientConfig{Policy: breaker.Config{Name: "bench"}, Tracing: in,
			Methods: map[string]grpcinfer.MethodPolicy{"/inference.GRPCInferenceService/ModelInfer": {MaxAttempts: 3}}})
		if err != nil {
			b.Fatal(err)
		}
		return connect(b, sopts, dopts, func(gs *grpc.Server) {
			g, err := grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{})
			if err != nil {
				b.Fatal(err)
			}
			g.SetReady(true)
		})
	}
	call := func(b *testing.B, c pb.GRPCInferenceServiceClient) time.Duration {
		start := time.Now()
		if _, err := c.ModelInfer(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	p50 := func(lat []time.Duration) float64 {
		slices.Sort(lat)
		return float64(lat[len(lat)/2].Nanoseconds())
	}
	sequential := func(b *testing.B, c pb.GRPCInferenceServiceClient) {
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			lat = append(lat, call(b, c))
		}
		b.StopTimer()
		b.ReportMetric(p50(lat), "p50-ns")
	}

	b.Run("bare", func(b *testing.B) { sequential(b, bare(b)) })
	b.Run("infermesh", func(b *testing.B) { sequential(b, full(b)) })
	// interleaved alternates the two, call by call, so that both see the same machine load;
	// its ns/op covers one call of each.
	b.Run("interleaved", func(b *testing.B) {
		cb, cf := bare(b), full(b)
		lb, lf := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 { // alternate which goes first
				lb = append(lb, call(b, cb))
				lf = append(lf, call(b, cf))
			} else {
				lf = append(lf, call(b, cf))
				lb = append(lb, call(b, cb))
			}
		}
		b.StopTimer()
		pb, pf := p50(lb), p50(lf)
		b.ReportMetric(pb, "bare-p50-ns")
		b.ReportMetric(pf, "infermesh-p50-ns")
		b.ReportMetric(100*(pf-pb)/pb, "p50-overhead-%")
	})
}
