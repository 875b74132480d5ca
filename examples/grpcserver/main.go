// Command grpcserver serves a small model over the Open Inference Protocol (KServe v2) with
// every infermesh server interceptor and the health gate, calls it with the infermesh client
// presets, then drains the server and exits.
//
// The model is a two-layer perceptron with hand-set weights that computes XOR of two inputs:
// input "x" is FP32 [batch, 2] with values in [0, 1], outputs are "probability" (FP32
// [batch], the sigmoid output) and "label" (INT64 [batch], the probability rounded). It is a
// real computation, but not a trained model: the weights are the textbook OR/NAND/AND
// construction, written below.
//
// Run it with
//
//	go run ./examples/grpcserver
//
// It listens on 127.0.0.1 on a free port (-addr to choose), makes a few calls, prints what
// happens and exits 0; nothing waits for outside input.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *addr, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "grpcserver:", err)
		os.Exit(1)
	}
}

// xorMLP is the model: hidden h1 = σ(20·x1 + 20·x2 − 10) (OR), h2 = σ(−20·x1 − 20·x2 + 30)
// (NAND), output y = σ(20·h1 + 20·h2 − 30) (AND of the two), which is XOR.
type xorMLP struct{}

var (
	hiddenW = [2][2]float64{{20, 20}, {-20, -20}}
	hiddenB = [2]float64{-10, 30}
	outW    = [2]float64{20, 20}
	outB    = -30.0
)

func sigmoid(v float64) float64 { return 1 / (1 + math.Exp(-v)) }

func (xorMLP) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Name: "xor-mlp", Versions: []string{"1"}, Platform: "go",
		Inputs: []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 2}}},
		Outputs: []oip.TensorMetadata{
			{Name: "probability", Datatype: oip.FP32, Shape: []int64{-1}},
			{Name: "label", Datatype: oip.Int64, Shape: []int64{-1}},
		},
	}
}

func (xorMLP) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	x, err := oip.TensorData[float32](req.Inputs[0])
	if err != nil {
		return nil, err
	}
	batch := req.Inputs[0].Shape[0]
	prob := make([]float32, batch)
	label := make([]int64, batch)
	for i := range batch {
		x1, x2 := float64(x[2*i]), float64(x[2*i+1])
		var h [2]float64
		for j := range h {
			h[j] = sigmoid(hiddenW[j][0]*x1 + hiddenW[j][1]*x2 + hiddenB[j])
		}
		y := sigmoid(outW[0]*h[0] + outW[1]*h[1] + outB)
		prob[i] = float32(y)
		if y >= 0.5 {
			label[i] = 1
		}
	}
	// This model has no tokens; it reports its element counts through the usage trailers
	// to show how a generative model would report input and output tokens.
	grpcinfer.ReportUsage(ctx, int64(len(x)), 2*batch)
	return &oip.InferResponse{Outputs: []oip.Tensor{
		oip.NewTensor("probability", []int64{batch}, prob),
		oip.NewTensor("label", []int64{batch}, label),
	}}, nil
}

// run starts the server on addr, calls it, drains it and returns; it writes what happens to
// out.
func run(ctx context.Context, addr string, out io.Writer) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// Server side: the server preset with every interceptor, the health gate, the model.
	sopts, err := grpcinfer.ServerOptions(grpcinfer.ServerConfig{
		MaxConcurrentCalls:   32,
		ShedRetryAfter:       50 * time.Millisecond,
		MinRemainingDeadline: 5 * time.Millisecond,
		Logger:               slog.New(slog.NewTextHandler(out, nil)),
	})
	if err != nil {
		return err
	}
	gs := grpc.NewServer(sopts...)
	gate, err := grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{
		Services:    []string{"inference.GRPCInferenceService"},
		DrainGrace:  200 * time.Millisecond,
		StopTimeout: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	model, err := oip.NewServer(oip.ServerConfig{Name: "infermesh-grpcserver-example", Models: []oip.Model{xorMLP{}}, Ready: gate.Serving})
	if err != nil {
		return err
	}
	model.Register(gs)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	defer gs.Stop() // no-op after a drain; stops the server on early returns

	// Client side: the client preset for this one upstream, with its breaker policy, zstd
	// and the method time limits.
	dopts, err := grpcinfer.DialOptions(grpcinfer.ClientConfig{
		Policy:     breaker.Config{Name: "xor-mlp", MaxAttempts: 3, Backoff: breaker.Backoff{Initial: 20 * time.Millisecond}},
		Compressor: grpcinfer.Zstd,
		Default:    grpcinfer.MethodPolicy{Timeout: 5 * time.Second, PerTryTimeout: 2 * time.Second},
	})
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(lis.Addr().String(), append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return err
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)
	client := oip.NewClient(cc)

	status := func() string {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "inference.GRPCInferenceService"})
		if err != nil {
			return "error: " + err.Error()
		}
		return r.Status.String()
	}
	ready, err := client.ServerReady(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "health before the model is loaded: %s (ServerReady %v)\n", status(), ready)

	gate.SetReady(true) // the model is in memory: open the gate
	ready, err = client.ServerReady(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "health after loading: %s (ServerReady %v)\n", status(), ready)

	inputs := []float32{0, 0, 0, 1, 1, 0, 1, 1}
	for _, raw := range []bool{true, false} {
		var trailer metadata.MD
		resp, err := client.Infer(ctx, &oip.InferRequest{
			ModelName: "xor-mlp", ID: fmt.Sprintf("req-raw-%v", raw), Raw: raw,
			Inputs: []oip.Tensor{oip.NewTensor("x", []int64{4, 2}, inputs)},
		}, grpc.Trailer(&trailer))
		if err != nil {
			return err
		}
		prob, err := oip.Output[float32](resp, "probability")
		if err != nil {
			return err
		}
		label, err := oip.Output[int64](resp, "label")
		if err != nil {
			return err
		}
		usage, _ := grpcinfer.UsageFromTrailer(trailer)
		fmt.Fprintf(out, "%s (raw contents %v, usage %d in / %d out):\n", resp.ID, resp.Raw, usage.InputTokens, usage.OutputTokens)
		for i := range label {
			fmt.Fprintf(out, "  xor(%v, %v) = %d  (p=%.4f)\n", inputs[2*i], inputs[2*i+1], label[i], prob[i])
		}
	}

	// A malformed request: the adapter names the tensor and the client gets INVALID_ARGUMENT.
	_, err = client.Infer(ctx, &oip.InferRequest{ModelName: "xor-mlp",
		Inputs: []oip.Tensor{oip.NewTensor("x", []int64{1, 3}, []float32{1, 0, 1})}})
	fmt.Fprintf(out, "bad shape: %v\n", err)

	// Drain: health turns NOT_SERVING at once, calls are still served for the grace period,
	// then the server stops gracefully.
	start := time.Now()
	drained := make(chan error, 1)
	go func() { drained <- gate.Drain(ctx) }()
	during := status()
	for i := 0; i < 100 && during == "SERVING"; i++ {
		time.Sleep(5 * time.Millisecond)
		during = status()
	}
	ready, err = client.ServerReady(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "health during the drain: %s (ServerReady %v)\n", during, ready)
	if err := <-drained; err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := <-served; err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintf(out, "drained and stopped after %v\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}
