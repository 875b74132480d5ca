package grpcinfer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer"
	pb "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

func TestHealthGateReadyAndDrain(t *testing.T) {
	t.Parallel()
	inHandler := make(chan struct{}, 1)
	finish := make(chan struct{})
	svc := &echoServer{unary: func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		if req.ModelName == "slow" {
			inHandler <- struct{}{}
			<-finish
		}
		return echo(ctx, req)
	}}
	var gate *grpcinfer.HealthGate
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}), func(gs *grpc.Server) {
		var err error
		gate, err = grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{
			Services: []string{"inference.GRPCInferenceService"}, DrainGrace: 300 * time.Millisecond, StopTimeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{})
	hc := healthpb.NewHealthClient(cc)
	ctx := longCtx(t, 20*time.Second)

	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		return r.Status
	}
	for _, svc := range []string{"", "inference.GRPCInferenceService"} {
		if st := check(svc); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("before ready, %q = %v, want NOT_SERVING", svc, st)
		}
	}
	if gate.Serving() {
		t.Fatal("Serving() before SetReady")
	}
	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("first watch status = %v, %v", r, err)
	}

	gate.SetReady(true)
	if st := check("inference.GRPCInferenceService"); st != healthpb.HealthCheckResponse_SERVING || !gate.Serving() {
		t.Fatalf("after SetReady, status = %v", st)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch after ready = %v, %v", r, err)
	}

	// A call in flight when the drain starts.
	slowErr := make(chan error, 1)
	go func() {
		_, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{ModelName: "slow"})
		slowErr <- err
	}()
	<-inHandler

	drainErr := make(chan error, 1)
	start := time.Now()
	go func() { drainErr <- gate.Drain(context.Background()) }()

	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch during drain = %v, %v", r, err)
	}
	// During the grace period: NOT_SERVING, yet still serving calls.
	if st := check(""); st != healthpb.HealthCheckResponse_NOT_SERVING || gate.Serving() {
		t.Fatalf("during drain, status = %v", st)
	}
	gate.SetReady(true) // must not undo the drain
	if st := check(""); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("SetReady during drain flipped health back to %v", st)
	}
	if _, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{ModelName: "fast"}); err != nil {
		t.Fatalf("call during the grace period: %v", err)
	}
	// The watch stream is ended by the server so GracefulStop does not wait for it.
	if _, err := watch.Recv(); err == nil {
		t.Fatal("watch stream still open after the drain began stopping")
	}
	close(finish)
	if err := <-slowErr; err != nil {
		t.Fatalf("in-flight call during drain: %v", err)
	}
	if err := <-drainErr; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 4*time.Second {
		t.Fatalf("Drain took %v; want the 300ms grace and far less than the stop timeout", el)
	}
	if err := gate.Drain(context.Background()); err != nil {
		t.Fatalf("second Drain: %v", err)
	}
	if _, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{}, grpc.WaitForReady(false)); status.Code(err) != codes.Unavailable {
		t.Fatalf("call after drain: %v, want UNAVAILABLE", err)
	}
}

func TestDrainForcesStopAfterTimeout(t *testing.T) {
	t.Parallel()
	inHandler := make(chan struct{})
	svc := &echoServer{unary: func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		close(inHandler)
		<-ctx.Done() // never finishes on its own
		return nil, ctx.Err()
	}}
	var gate *grpcinfer.HealthGate
	srv := startServer(t, svc, nil, func(gs *grpc.Server) {
		gate, _ = grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{DrainGrace: -1, StopTimeout: 200 * time.Millisecond})
	})
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{})
	callErr := make(chan error, 1)
	go func() {
		_, err := invokeEcho(longCtx(t, 20*time.Second), cc, &pb.ModelInferRequest{})
		callErr <- err
	}()
	<-inHandler
	start := time.Now()
	err := gate.Drain(context.Background())
	if !errors.Is(err, grpcinfer.ErrForcedStop) {
		t.Fatalf("Drain = %v, want ErrForcedStop", err)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 3*time.Second {
		t.Fatalf("forced stop after %v, want about 200ms", el)
	}
	if err := <-callErr; err == nil {
		t.Fatal("the stuck call succeeded after a hard stop")
	}
}

func TestDrainHonoursContext(t *testing.T) {
	t.Parallel()
	var gate *grpcinfer.HealthGate
	startServer(t, nil, nil, func(gs *grpc.Server) {
		gate, _ = grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{DrainGrace: time.Hour})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := gate.Drain(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "grace period") {
		t.Fatalf("Drain = %v, want the ctx error during the grace period", err)
	}
}

func TestNewHealthGateValidation(t *testing.T) {
	t.Parallel()
	if _, err := grpcinfer.NewHealthGate(nil, grpcinfer.HealthConfig{}); err == nil {
		t.Fatal("nil server accepted")
	}
	gs := grpc.NewServer()
	defer gs.Stop()
	if _, err := grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{Services: []string{""}}); err == nil || !strings.Contains(err.Error(), "Services[0]") {
		t.Fatalf("empty service name: %v", err)
	}
}

// TestHealthGateLoading holds the gate NOT_SERVING while loads are under way, overlapping ones
// included, and lets SetReady and Drain keep their meaning around it.
func TestHealthGateLoading(t *testing.T) {
	t.Parallel()
	var gate *grpcinfer.HealthGate
	srv := startServer(t, nil, nil, func(gs *grpc.Server) {
		var err error
		if gate, err = grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{DrainGrace: -1, StopTimeout: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
	})
	hc := healthpb.NewHealthClient(dial(t, srv.Addr, grpcinfer.ClientConfig{}))
	ctx := longCtx(t, 20*time.Second)
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if (r.Status == healthpb.HealthCheckResponse_SERVING) != gate.Serving() {
			t.Fatalf("health says %v but Serving() = %v", r.Status, gate.Serving())
		}
		return r.Status
	}
	serving, notServing := healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING

	doneA := gate.Loading() // a load before the server is ready
	gate.SetReady(true)
	if st := status(); st != notServing {
		t.Fatalf("ready while loading: %v", st)
	}
	doneB := gate.Loading()
	doneA()
	doneA() // a second call does nothing
	if st := status(); st != notServing {
		t.Fatalf("one of two loads done: %v", st)
	}
	doneB()
	if st := status(); st != serving {
		t.Fatalf("loads done: %v", st)
	}
	doneC := gate.Loading()
	if err := gate.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	doneC()
	if gate.Serving() {
		t.Fatal("Serving after a drain")
	}
}
