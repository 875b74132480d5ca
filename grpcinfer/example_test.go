package grpcinfer_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
)

// scaler is a model that multiplies its FP32 input by 3 and reports its element counts as
// token usage.
type scaler struct{}

func (scaler) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{Name: "scaler",
		Inputs:  []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1}}},
		Outputs: []oip.TensorMetadata{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1}}}}
}

func (scaler) Infer(ctx context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
	x, err := oip.TensorData[float32](r.Inputs[0])
	if err != nil {
		return nil, err
	}
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = 3 * v
	}
	grpcinfer.ReportUsage(ctx, int64(len(x)), int64(len(y)))
	return &oip.InferResponse{Outputs: []oip.Tensor{oip.NewTensor("y", r.Inputs[0].Shape, y)}}, nil
}

// Example serves a model with the server preset and the health gate on a loopback port, and
// calls it with the client preset: breaker policy, zstd, usage trailers.
func Example() {
	ctx := context.Background()

	// Server.
	sopts, err := grpcinfer.ServerOptions(grpcinfer.ServerConfig{MaxConcurrentCalls: 16, MinRemainingDeadline: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	gs := grpc.NewServer(sopts...)
	gate, err := grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{DrainGrace: -1})
	if err != nil {
		panic(err)
	}
	model, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{scaler{}}, Ready: gate.Serving})
	if err != nil {
		panic(err)
	}
	model.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go gs.Serve(lis)
	gate.SetReady(true)

	// Client: one ClientConfig per upstream; its Policy builds that upstream's breaker.
	dopts, err := grpcinfer.DialOptions(grpcinfer.ClientConfig{
		Policy:     breaker.Config{Name: "scaler", Backoff: breaker.Backoff{Initial: 10 * time.Millisecond}},
		Compressor: grpcinfer.Zstd,
		Default:    grpcinfer.MethodPolicy{Timeout: 5 * time.Second},
	})
	if err != nil {
		panic(err)
	}
	cc, err := grpc.NewClient(lis.Addr().String(), append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		panic(err)
	}
	defer cc.Close()

	var trailer metadata.MD
	resp, err := oip.NewClient(cc).Infer(ctx, &oip.InferRequest{
		ModelName: "scaler", Raw: true,
		Inputs: []oip.Tensor{oip.NewTensor("x", []int64{3}, []float32{1, 2, 3})},
	}, grpc.Trailer(&trailer))
	if err != nil {
		panic(err)
	}
	y, _ := oip.Output[float32](resp, "y")
	usage, _ := grpcinfer.UsageFromTrailer(trailer)
	fmt.Println("y:", y)
	fmt.Println("usage:", usage.InputTokens, "in,", usage.OutputTokens, "out")

	fmt.Println("drain:", gate.Drain(ctx))
	_, err = oip.NewClient(cc).Infer(ctx, &oip.InferRequest{ModelName: "scaler",
		Inputs: []oip.Tensor{oip.NewTensor("x", []int64{1}, []float32{1})}}, grpc.WaitForReady(false))
	fmt.Println("after drain:", status.Code(err))
	// Output:
	// y: [3 6 9]
	// usage: 3 in, 3 out
	// drain: <nil>
	// after drain: Unavailable
}

// ExampleError shows what a failed call returns: an *Error with the server's status and the
// breaker's verdict, and errors.Is reaching the breaker's reason.
func ExampleError() {
	gs := grpc.NewServer()
	model, _ := oip.NewServer(oip.ServerConfig{Models: []oip.Model{scaler{}}})
	model.Register(gs)
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go gs.Serve(lis)
	defer gs.Stop()

	dopts, _ := grpcinfer.DialOptions(grpcinfer.ClientConfig{}) // the defaults: breaker and retries on
	cc, _ := grpc.NewClient(lis.Addr().String(), append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	defer cc.Close()

	_, err := oip.NewClient(cc).Infer(context.Background(), &oip.InferRequest{ModelName: "no-such-model",
		Inputs: []oip.Tensor{oip.NewTensor("x", []int64{1}, []float32{1})}})
	var e *grpcinfer.Error
	if errors.As(err, &e) {
		fmt.Println("code:", status.Code(err))
		fmt.Println("message:", status.Convert(err).Message())
		fmt.Println("verdict:", e.Verdict.Outcome, e.Verdict.Class, "retryable:", e.Verdict.Retryable)
		fmt.Println("not retryable:", errors.Is(err, breaker.ErrNotRetryable))
	}
	// Output:
	// code: NotFound
	// message: oip: unknown model "no-such-model"
	// verdict: excluded client_error retryable: false
	// not retryable: true
}

// ExampleNewHealthGate shows the gate's status before and after the model is loaded.
func ExampleNewHealthGate() {
	gs := grpc.NewServer()
	gate, _ := grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{})
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go gs.Serve(lis)
	defer gs.Stop()
	cc, _ := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)

	r, _ := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println("loading:", r.Status)
	gate.SetReady(true)
	r, _ = health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	fmt.Println("loaded:", r.Status)
	// Output:
	// loading: NOT_SERVING
	// loaded: SERVING
}
