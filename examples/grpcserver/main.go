// Command grpcserver serves two models over the Open Inference Protocol (KServe v2, with
// Triton's streaming, statistics and model repository extensions), with every infermesh server
// interceptor, gRPC server reflection and the health gate:
//
//   - "xor-mlp", a two-layer perceptron with hand-set weights that computes XOR (ModelInfer);
//   - "generator", a small deterministic text generator that streams its answer token by
//     token over ModelStreamInfer, as an LLM behind Triton's decoupled backends does.
//
// Run without flags, it is a short demo that needs nothing else: it listens on a free
// loopback port, calls the models with the infermesh client presets and the streaming client,
// drains the server while a generation is still streaming (the generation finishes, a new
// call is refused with UNAVAILABLE), prints what happens and exits 0:
//
//	go run ./examples/grpcserver
//
// With -serve it keeps serving, for grpcurl, grpc_health_probe or a client of your own, until
// SIGTERM or SIGINT, then drains: health turns NOT_SERVING and new inference calls are refused
// with UNAVAILABLE at once, calls in flight go on for the grace period and until they finish
// (at most the stop timeout), then the server stops. See README.md for the commands.
//
//	go run ./examples/grpcserver -serve -addr 127.0.0.1:8001
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
)

func main() {
	addr := flag.String("addr", "", "listen address (default 127.0.0.1:0 for the demo, 127.0.0.1:8001 with -serve)")
	serveFlag := flag.Bool("serve", false, "serve until SIGTERM or SIGINT, then drain and exit")
	grace := flag.Duration("drain-grace", grpcinfer.DefaultDrainGrace, "with -serve: how long the server keeps running after health turns NOT_SERVING")
	stop := flag.Duration("stop-timeout", grpcinfer.DefaultStopTimeout, "with -serve: how long calls in flight may take to finish once the grace period is over")
	flag.Parse()
	var err error
	if *serveFlag {
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		context.AfterFunc(ctx, cancel) // after the first signal, a second one ends the program at once
		err = serve(ctx, cmp.Or(*addr, "127.0.0.1:8001"), os.Stdout, *grace, *stop)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = run(ctx, cmp.Or(*addr, "127.0.0.1:0"), os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcserver:", err)
		os.Exit(1)
	}
}

// server is the example's gRPC server: the server preset (interceptors and reflection), the
// health gate and the two models.
type server struct {
	gs     *grpc.Server
	gate   *grpcinfer.HealthGate
	addr   string
	served chan error
}

// start listens on addr and serves. The health gate reports NOT_SERVING until SetReady(true).
// pace is the generator's time per token.
func start(addr string, log io.Writer, grace, stop, pace time.Duration) (*server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	gs, err := grpcinfer.NewServer(grpcinfer.ServerConfig{
		MaxConcurrentCalls:   32,
		ShedRetryAfter:       50 * time.Millisecond,
		MinRemainingDeadline: 5 * time.Millisecond,
		Logger:               slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		lis.Close()
		return nil, err
	}
	gate, err := grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{
		Services: []string{"inference.GRPCInferenceService"}, DrainGrace: grace, StopTimeout: stop,
	})
	if err != nil {
		lis.Close()
		return nil, err
	}
	models, err := oip.NewServer(oip.ServerConfig{
		Name: "infermesh-grpcserver-example", Extensions: []string{"model_repository", "statistics"},
		Models: []oip.Model{xorMLP{}, generator{pace: pace}},
		Ready:  gate.Serving, Loading: gate.Loading,
	})
	if err != nil {
		lis.Close()
		return nil, err
	}
	models.Register(gs)
	s := &server{gs: gs, gate: gate, addr: lis.Addr().String(), served: make(chan error, 1)}
	go func() { s.served <- gs.Serve(lis) }()
	return s, nil
}

// drain drains the server (see grpcinfer.HealthGate.Drain) and waits for Serve to return.
func (s *server) drain(ctx context.Context) error {
	if err := s.gate.Drain(ctx); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := <-s.served; err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// serve serves on addr until ctx ends, then drains and returns.
func serve(ctx context.Context, addr string, out io.Writer, grace, stop time.Duration) error {
	s, err := start(addr, out, grace, stop, 50*time.Millisecond)
	if err != nil {
		return err
	}
	s.gate.SetReady(true)
	fmt.Fprintf(out, "serving on %s: inference.GRPCInferenceService (models xor-mlp and generator), grpc.health.v1.Health, server reflection\n", s.addr)
	fmt.Fprintln(out, "SIGTERM or SIGINT drains: health NOT_SERVING and new calls refused at once, calls in flight finish, then the server stops")
	select {
	case <-ctx.Done():
	case err := <-s.served:
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintf(out, "draining (grace %v, stop timeout %v)\n", grace, stop)
	dctx, cancel := context.WithTimeout(context.Background(), grace+stop+5*time.Second)
	defer cancel()
	if err := s.drain(dctx); err != nil {
		return err
	}
	fmt.Fprintln(out, "stopped")
	return nil
}
