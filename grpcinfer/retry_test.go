package grpcinfer_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	pb "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// grpcRetries is a service config under which gRPC itself retries UNAVAILABLE, up to 4
// attempts.
const grpcRetries = `{"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":4,"initialBackoff":"0.001s",
	"maxBackoff":"0.005s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}`

// TestOneRetryLayer: for a persistent UNAVAILABLE, the upstream receives each logical call
// exactly as many times as the one retry layer allows: the interceptors' Policy by default
// (gRPC's retries are off, even those a name resolver's service config asks for), gRPC's
// service config with NoPolicy, and once with NoPolicy alone.
func TestOneRetryLayer(t *testing.T) {
	t.Parallel()
	var calls perID
	unavailable := status.Error(codes.Unavailable, "replica restarting")
	svc := &echoServer{
		unary: func(_ context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			calls.add(r.Id)
			return nil, unavailable
		},
		stream: func(r *pb.ModelInferRequest, _ grpc.ServerStream) error {
			calls.add(r.Id)
			return unavailable
		},
	}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}))
	three := fast(breaker.Config{MaxAttempts: 3, MinimumCalls: 10}) // 6 failed attempts judge nothing yet
	for _, tc := range []struct {
		name        string
		cfg         grpcinfer.ClientConfig
		resolvedSC  string // a service config the name resolver delivers
		upstream    int64  // requests per logical call
		interceptor int    // attempts the interceptors report
	}{
		{name: "defaults", cfg: grpcinfer.ClientConfig{}, upstream: breaker.DefaultMaxAttempts, interceptor: breaker.DefaultMaxAttempts},
		{name: "policy of 3 attempts", cfg: grpcinfer.ClientConfig{Policy: three}, upstream: 3, interceptor: 3},
		{name: "resolver asks gRPC to retry", cfg: grpcinfer.ClientConfig{Policy: three}, resolvedSC: grpcRetries, upstream: 3, interceptor: 3},
		{name: "no policy", cfg: grpcinfer.ClientConfig{NoPolicy: true}, upstream: 1, interceptor: 1},
		{name: "no policy, gRPC retries", cfg: grpcinfer.ClientConfig{NoPolicy: true, ServiceConfig: grpcRetries}, upstream: 4, interceptor: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var cc *grpc.ClientConn
			if tc.resolvedSC != "" {
				target, opt := resolvedWith(srv.Addr, tc.resolvedSC)
				cc = dial(t, target, tc.cfg, opt)
			} else {
				cc = dial(t, srv.Addr, tc.cfg)
			}
			ctx := longCtx(t, 30*time.Second)
			// Two logical calls, unary and streamed, their attempts fewer than the breaker's
			// MinimumCalls, so that every attempt the Policy allows is made.
			unaryID, streamID := t.Name()+"/unary", t.Name()+"/stream"
			_, uerr := invokeEcho(ctx, cc, &pb.ModelInferRequest{Id: unaryID})
			st, serr := openStream(ctx, cc, &pb.ModelInferRequest{Id: streamID})
			if serr == nil {
				_, serr = drain(st)
			}
			for _, c := range []struct {
				id  string
				err error
			}{{unaryID, uerr}, {streamID, serr}} {
				var ge *grpcinfer.Error
				if !errors.As(c.err, &ge) || ge.Code != codes.Unavailable || ge.Attempts != tc.interceptor {
					t.Fatalf("%s: err = %v (%#v), want UNAVAILABLE after %d attempts", c.id, c.err, ge, tc.interceptor)
				}
				if n := calls.get(c.id); n != tc.upstream {
					t.Errorf("%s: upstream received %d requests, want %d", c.id, n, tc.upstream)
				}
			}
		})
	}
}

// resolvedWith returns a target and dial option whose name resolver delivers addr with the
// service config sc, as DNS or xDS may.
func resolvedWith(addr, sc string) (string, grpc.DialOption) {
	r := manual.NewBuilderWithScheme("grpcinfer-test")
	r.BuildCallback = func(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) {
		r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: addr}}, ServiceConfig: cc.ParseServiceConfig(sc)})
	}
	return r.Scheme() + ":///upstream", grpc.WithResolvers(r)
}

// rpcCounter counts the RPCs a server began, whether or not a handler ran.
type rpcCounter struct{ n atomic.Int64 }

func (c *rpcCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *rpcCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); ok {
		c.n.Add(1)
	}
}
func (c *rpcCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *rpcCounter) HandleConn(context.Context, stats.ConnStats)                       {}

// TestOversizedRequestIsTheCallersMistake: a request the server refuses as larger than its
// receive limit is sent once, never retried, and never counted against the upstream by a
// breaker that would open on a single failure; a request that fits then succeeds.
func TestOversizedRequestIsTheCallersMistake(t *testing.T) {
	t.Parallel()
	var began rpcCounter
	var ran atomic.Int64
	svc := &echoServer{
		unary: func(ctx context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			ran.Add(1)
			return echo(ctx, r)
		},
		stream: func(r *pb.ModelInferRequest, ss grpc.ServerStream) error {
			ran.Add(1)
			return ss.SendMsg(&pb.ModelInferResponse{Id: r.Id})
		},
	}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{MaxRecvMsgSize: 1 << 20}, grpc.StatsHandler(&began)))
	ctx := longCtx(t, 60*time.Second)
	big := &pb.ModelInferRequest{RawInputContents: [][]byte{make([]byte, 5<<20)}}

	// Uncompressed, the server refuses the wire size; zstd-compressed, the decompressed size.
	for _, compressor := range []string{"", grpcinfer.Zstd} {
		var log stateLog
		cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Compressor: compressor,
			Policy: fast(breaker.Config{WindowSize: 1, MinimumCalls: 1, MaxAttempts: 3, Hooks: log.hooks()})})
		for _, streamed := range []bool{false, true} {
			before := began.n.Load()
			var err error
			if streamed {
				var st grpc.ClientStream
				if st, err = openStream(ctx, cc, big); err == nil {
					_, err = drain(st)
				}
			} else {
				_, err = invokeEcho(ctx, cc, big)
			}
			var ge *grpcinfer.Error
			if !errors.As(err, &ge) || ge.Code != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "larger than max") {
				t.Fatalf("compressor %q, streamed %v: err = %v, want the server's RESOURCE_EXHAUSTED", compressor, streamed, err)
			}
			want := breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassClientError}
			if ge.Attempts != 1 || ge.Verdict.Outcome != want.Outcome || ge.Verdict.Class != want.Class || ge.Verdict.Retryable || !errors.Is(err, breaker.ErrNotRetryable) {
				t.Fatalf("compressor %q, streamed %v: %d attempts, verdict %+v; want 1 attempt, excluded client_error, not retryable", compressor, streamed, ge.Attempts, ge.Verdict)
			}
			if n := began.n.Load() - before; n != 1 {
				t.Fatalf("compressor %q, streamed %v: the server received the request %d times, want once", compressor, streamed, n)
			}
		}
		if got := log.String(); got != "" {
			t.Fatalf("compressor %q: breaker transitions %q after the caller's own mistakes", compressor, got)
		}
		if _, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{Id: "fits"}); err != nil {
			t.Fatalf("compressor %q: a request that fits: %v", compressor, err)
		}
	}
	if n := ran.Load(); n != 2 {
		t.Fatalf("handlers ran %d times, want 2 (only for the requests that fit)", n)
	}
}
