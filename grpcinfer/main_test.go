package grpcinfer_test

import (
	"context"
	"net"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/infermesh/infermesh/grpcinfer"
	pb "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The test service: a unary method and a server-streaming method over the protocol's messages,
// written the way generated code is, with behaviour supplied per test.
const (
	echoMethod   = "/infermesh.test.Echo/Echo"
	streamMethod = "/infermesh.test.Echo/Stream"
	bidiMethod   = "/infermesh.test.Echo/Bidi"
)

type echoServer struct {
	unary  func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error)
	stream func(req *pb.ModelInferRequest, ss grpc.ServerStream) error
	bidi   func(ss grpc.ServerStream) error
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "infermesh.test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(pb.ModelInferRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			s := srv.(*echoServer)
			h := func(ctx context.Context, req any) (any, error) { return s.unary(ctx, req.(*pb.ModelInferRequest)) }
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: echoMethod}, h)
		},
	}},
	Streams: []grpc.StreamDesc{
		{StreamName: "Stream", ServerStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			in := new(pb.ModelInferRequest)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			return srv.(*echoServer).stream(in, ss)
		}},
		{StreamName: "Bidi", ServerStreams: true, ClientStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
			return srv.(*echoServer).bidi(ss)
		}},
	},
}

// echo answers with the request's model name and id.
func echo(_ context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return &pb.ModelInferResponse{ModelName: req.ModelName, Id: req.Id, RawOutputContents: req.RawInputContents}, nil
}

type testServer struct {
	Addr string
	GS   *grpc.Server
	stop sync.Once
	done chan struct{}
}

// Stop stops the server (idempotent).
func (s *testServer) Stop() {
	s.stop.Do(func() { s.GS.Stop() })
	<-s.done
}

// startServer serves svc on a loopback TCP port with opts; register adds more services.
func startServer(t testing.TB, svc *echoServer, opts []grpc.ServerOption, register ...func(*grpc.Server)) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, lis, svc, opts, register...)
}

func serveOn(t testing.TB, lis net.Listener, svc *echoServer, opts []grpc.ServerOption, register ...func(*grpc.Server)) *testServer {
	t.Helper()
	gs := grpc.NewServer(opts...)
	if svc != nil {
		gs.RegisterService(&echoDesc, svc)
	}
	for _, r := range register {
		r(gs)
	}
	s := &testServer{Addr: lis.Addr().String(), GS: gs, done: make(chan struct{})}
	go func() { defer close(s.done); _ = gs.Serve(lis) }()
	t.Cleanup(s.Stop)
	return s
}

// dial connects to addr with the client preset for cfg plus extra options.
func dial(t testing.TB, addr string, cfg grpcinfer.ClientConfig, extra ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts, err := grpcinfer.DialOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	cc, err := grpc.NewClient(addr, append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func serverOptions(t testing.TB, cfg grpcinfer.ServerConfig, extra ...grpc.ServerOption) []grpc.ServerOption {
	t.Helper()
	opts, err := grpcinfer.ServerOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return append(opts, extra...)
}

func invokeEcho(ctx context.Context, cc *grpc.ClientConn, req *pb.ModelInferRequest, opts ...grpc.CallOption) (*pb.ModelInferResponse, error) {
	out := new(pb.ModelInferResponse)
	err := cc.Invoke(ctx, echoMethod, req, out, opts...)
	return out, err
}
