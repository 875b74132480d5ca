package grpcinfer_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
)

// TestServerReflection lists the services of a server built with NewServer through gRPC's
// reflection client API, as grpcurl does, and checks that DisableReflection leaves it out.
// The server admits one call at a time, and reflection streams are exempt from that limit: the
// second stream opens while the first is still open.
func TestServerReflection(t *testing.T) {
	t.Parallel()
	for _, disabled := range []bool{false, true} {
		gs, err := grpcinfer.NewServer(grpcinfer.ServerConfig{DisableReflection: disabled, MaxConcurrentCalls: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{}); err != nil {
			t.Fatal(err)
		}
		model, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{identity{}}})
		if err != nil {
			t.Fatal(err)
		}
		model.Register(gs)
		srv := serveGRPC(t, gs)
		cc := dial(t, srv.Addr, grpcinfer.ClientConfig{})
		ctx := longCtx(t, 20*time.Second)

		stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		var resp *reflectionpb.ServerReflectionResponse
		if err == nil || err == io.EOF { // io.EOF: the stream has ended already, Recv tells how
			resp, err = stream.Recv()
		}
		if disabled {
			stream.CloseSend()
			if status.Code(err) != codes.Unimplemented {
				t.Fatalf("reflection with DisableReflection: %v, want Unimplemented", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		first := stream // kept open while the second stream runs
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		for _, want := range []string{"inference.GRPCInferenceService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !slices.Contains(names, want) {
				t.Errorf("reflection lists %v, without %s", names, want)
			}
		}
		// The file that defines the service can be fetched, as grpcurl describe does.
		stream, err = reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{
			FileContainingSymbol: "inference.GRPCInferenceService"}}); err != nil {
			t.Fatal(err)
		}
		r, err := stream.Recv()
		stream.CloseSend()
		first.CloseSend()
		if err != nil || len(r.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
			t.Fatalf("file of inference.GRPCInferenceService: %v, %v", r, err)
		}
	}
}

// serveGRPC serves gs on a loopback port until the test ends.
func serveGRPC(t *testing.T, gs *grpc.Server) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{Addr: lis.Addr().String(), GS: gs, done: make(chan struct{})}
	go func() { defer close(s.done); _ = gs.Serve(lis) }()
	t.Cleanup(s.Stop)
	return s
}

// ExampleNewServer builds a server with the preset and reflection, and lists its services
// through reflection, as grpcurl list does.
func ExampleNewServer() {
	gs, err := grpcinfer.NewServer(grpcinfer.ServerConfig{MaxConcurrentCalls: 64})
	if err != nil {
		panic(err)
	}
	model, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{scaler{}}})
	if err != nil {
		panic(err)
	}
	model.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer cc.Close()
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(context.Background())
	if err != nil {
		panic(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		panic(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		panic(err)
	}
	for _, s := range resp.GetListServicesResponse().GetService() {
		fmt.Println(s.GetName())
	}
	// Unordered output:
	// grpc.reflection.v1.ServerReflection
	// grpc.reflection.v1alpha.ServerReflection
	// inference.GRPCInferenceService
}
