package grpcinfer_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer"
	pb "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
	"github.com/infermesh/infermesh/tracing"
)

func TestLoadSheddingRefusesBeforeTheHandler(t *testing.T) {
	t.Parallel()
	const limit = 3
	var entered atomic.Int64
	release := make(chan struct{})
	inside := make(chan struct{}, limit)
	svc := &echoServer{
		unary: func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			entered.Add(1)
			inside <- struct{}{}
			<-release
			return echo(ctx, req)
		},
		stream: func(req *pb.ModelInferRequest, ss grpc.ServerStream) error {
			entered.Add(1)
			return nil
		},
	}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{MaxConcurrentCalls: limit, ShedRetryAfter: 250 * time.Millisecond}),
		func(gs *grpc.Server) { _, _ = grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{}) })
	// Single attempts, so that every refusal the server sends reaches the test.
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{NoPolicy: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, limit)
	for range limit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{ModelName: "m"})
			errs <- err
		}()
	}
	for range limit {
		select {
		case <-inside:
		case <-ctx.Done():
			t.Fatal("the first calls never reached the handler")
		}
	}

	// Call limit+1, unary and streaming: refused, handler not run, pushback sent.
	var trailer metadata.MD
	_, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{ModelName: "m"}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("call %d: err = %v, want RESOURCE_EXHAUSTED", limit+1, err)
	}
	if !strings.Contains(status.Convert(err).Message(), "limit of 3 concurrent calls") {
		t.Fatalf("message = %q", status.Convert(err).Message())
	}
	if got := trailer.Get("grpc-retry-pushback-ms"); len(got) != 1 || got[0] != "250" {
		t.Fatalf("pushback trailer = %v, want [250]", got)
	}
	var ge *grpcinfer.Error
	if !errors.As(err, &ge) || ge.RetryAfter != 250*time.Millisecond || !ge.TrailersOnly {
		t.Fatalf("client error = %#v, want RetryAfter 250ms and TrailersOnly", ge)
	}
	st, err := cc.NewStream(ctx, &echoDesc.Streams[0], streamMethod)
	if err == nil {
		if err = st.SendMsg(&pb.ModelInferRequest{}); err == nil {
			_ = st.CloseSend()
			err = st.RecvMsg(new(pb.ModelInferResponse))
		}
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream over the limit: err = %v, want RESOURCE_EXHAUSTED", err)
	}
	if n := entered.Load(); n != limit {
		t.Fatalf("handlers entered = %d, want %d (refused calls must not run)", n, limit)
	}

	// The health service is exempt.
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check while at the limit: %v", err)
	}

	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("admitted call failed: %v", err)
		}
	}
	// Slots are released: the next call runs.
	if _, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{ModelName: "m"}); err != nil {
		t.Fatalf("call after release: %v", err)
	}
}

func TestMinRemainingDeadline(t *testing.T) {
	t.Parallel()
	var ran atomic.Int64
	svc := &echoServer{unary: func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		ran.Add(1)
		return echo(ctx, req)
	}}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{MinRemainingDeadline: 2 * time.Second}))
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{NoPolicy: true}) // the server's refusal, unretried

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "below the server's minimum 2s") {
		t.Fatalf("short deadline: err = %v", err)
	}
	if el := time.Since(start); el > 400*time.Millisecond {
		t.Fatalf("refusal took %v; it must come at once, not at the deadline", el)
	}
	if ran.Load() != 0 {
		t.Fatal("handler ran for a call that could not finish in time")
	}
	for _, ctx := range []context.Context{context.Background(), longCtx(t, 10*time.Second)} {
		if _, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{}); err != nil {
			t.Fatalf("call with enough time: %v", err)
		}
	}
}

func longCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	svc := &echoServer{
		unary:  func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) { panic("model exploded") },
		stream: func(*pb.ModelInferRequest, grpc.ServerStream) error { panic(errors.New("stream exploded")) },
	}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{Logger: logger, MaxConcurrentCalls: 1}))
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{})
	ctx := longCtx(t, 10*time.Second)

	for range 2 { // twice: the shed slot must be released after a panic
		_, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{})
		if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "exploded") {
			t.Fatalf("panicking unary: err = %v, want INTERNAL without the panic value", err)
		}
	}
	st, err := cc.NewStream(ctx, &echoDesc.Streams[0], streamMethod)
	if err != nil {
		t.Fatal(err)
	}
	_ = st.SendMsg(&pb.ModelInferRequest{})
	_ = st.CloseSend()
	if err := st.RecvMsg(new(pb.ModelInferResponse)); status.Code(err) != codes.Internal {
		t.Fatalf("panicking stream: err = %v, want INTERNAL", err)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	for _, want := range []string{"panic in handler", echoMethod, "model exploded", streamMethod, "stream exploded", "server_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	// Silent by default.
	srv2 := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}))
	if _, err := invokeEcho(ctx, dial(t, srv2.Addr, grpcinfer.ClientConfig{}), &pb.ModelInferRequest{}); status.Code(err) != codes.Internal {
		t.Fatalf("without logger: %v", err)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestUsageTrailersAndSpans(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	in, err := tracing.New(tracing.Config{TracerProvider: tp, Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}

	svc := &echoServer{
		unary: func(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
			if !grpcinfer.ReportUsage(ctx, 12, 30) {
				return nil, status.Error(codes.Internal, "no usage recorder in context")
			}
			return echo(ctx, req)
		},
		stream: func(req *pb.ModelInferRequest, ss grpc.ServerStream) error {
			for range 3 {
				grpcinfer.ReportUsage(ss.Context(), 0, 2) // per generated message
				if err := ss.SendMsg(&pb.ModelInferResponse{}); err != nil {
					return err
				}
			}
			grpcinfer.ReportUsage(ss.Context(), 7, 0)
			return nil
		},
	}
	// Server with its own tracing: usage on the server span.
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{Tracing: in}))
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Tracing: in})
	ctx := longCtx(t, 10*time.Second)
	var trailer metadata.MD
	if _, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{ModelName: "tiny", Id: "r1"}, grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	if u, ok := grpcinfer.UsageFromTrailer(trailer); !ok || u != (grpcinfer.Usage{InputTokens: 12, OutputTokens: 30}) || u.TotalTokens() != 42 {
		t.Fatalf("usage from trailer = %+v, %v", u, ok)
	}
	st, err := cc.NewStream(ctx, &echoDesc.Streams[0], streamMethod)
	if err != nil {
		t.Fatal(err)
	}
	_ = st.SendMsg(&pb.ModelInferRequest{ModelName: "tiny"})
	_ = st.CloseSend()
	for {
		if err := st.RecvMsg(new(pb.ModelInferResponse)); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if u, ok := grpcinfer.UsageFromTrailer(st.Trailer()); !ok || u != (grpcinfer.Usage{InputTokens: 7, OutputTokens: 6}) {
		t.Fatalf("stream usage = %+v, %v", u, ok)
	}

	spans := rec.Ended()
	find := func(kind trace.SpanKind, name string) sdktrace.ReadOnlySpan {
		for _, s := range spans {
			if s.SpanKind() == kind && s.Name() == name {
				return s
			}
		}
		return nil
	}
	server, client := find(trace.SpanKindServer, "infer tiny"), find(trace.SpanKindClient, "infer tiny")
	if server == nil || client == nil {
		names := []string{}
		for _, s := range spans {
			names = append(names, s.SpanKind().String()+":"+s.Name())
		}
		t.Fatalf("missing spans; have %v", names)
	}
	for _, s := range []sdktrace.ReadOnlySpan{server, client} {
		attrs := attrMap(s.Attributes())
		if attrs["gen_ai.usage.input_tokens"] != "12" || attrs["gen_ai.usage.output_tokens"] != "30" {
			t.Errorf("%v span usage attributes = %v", s.SpanKind(), attrs)
		}
		if attrs["rpc.method"] != strings.TrimPrefix(echoMethod, "/") || attrs["gen_ai.operation.name"] != "infer" {
			t.Errorf("%v span rpc/operation attributes = %v", s.SpanKind(), attrs)
		}
	}
	if server.SpanContext().TraceID() != client.SpanContext().TraceID() {
		t.Error("server span did not join the client's trace")
	}

	// Without an Instrumenter, usage goes on whatever span the context carries.
	rec2 := tracetest.NewSpanRecorder()
	tp2 := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec2))
	defer tp2.Shutdown(context.Background())
	startSpan := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, span := tp2.Tracer("test").Start(ctx, "outer")
		defer span.End()
		return h(ctx, req)
	}
	srv2 := startServer(t, svc, append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(startSpan)}, serverOptions(t, grpcinfer.ServerConfig{})...))
	if _, err := invokeEcho(ctx, dial(t, srv2.Addr, grpcinfer.ClientConfig{}), &pb.ModelInferRequest{}); err != nil {
		t.Fatal(err)
	}
	if len(rec2.Ended()) != 1 {
		t.Fatalf("spans = %d", len(rec2.Ended()))
	}
	attrs := attrMap(rec2.Ended()[0].Attributes())
	if attrs["gen_ai.usage.input_tokens"] != "12" || attrs["llm.total_tokens"] != "42" {
		t.Fatalf("outer span attributes = %v", attrs)
	}
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func TestReportUsageOutsideACall(t *testing.T) {
	t.Parallel()
	if grpcinfer.ReportUsage(context.Background(), 1, 1) {
		t.Fatal("ReportUsage claimed success without a call")
	}
	if _, ok := grpcinfer.UsageFromTrailer(metadata.Pairs(grpcinfer.TrailerInputTokens, "x", grpcinfer.TrailerOutputTokens, "1")); ok {
		t.Fatal("malformed usage trailer accepted")
	}
}

func TestServerConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  grpcinfer.ServerConfig
		want string
	}{
		{grpcinfer.ServerConfig{MaxConcurrentCalls: -1}, "MaxConcurrentCalls -1"},
		{grpcinfer.ServerConfig{MinRemainingDeadline: -time.Second}, "MinRemainingDeadline -1s"},
		{grpcinfer.ServerConfig{ShedRetryAfter: -1}, "ShedRetryAfter"},
		{grpcinfer.ServerConfig{ExemptMethods: []string{"grpc.health.v1.Health/"}}, `ExemptMethods[0]`},
		{grpcinfer.ServerConfig{MaxRecvMsgSize: -5}, "MaxRecvMsgSize -5"},
		{grpcinfer.ServerConfig{Keepalive: grpcinfer.Keepalive{Time: 20 * time.Second, MinTime: time.Minute}}, "Keepalive.Time 20s is below Keepalive.MinTime 1m0s"},
		{grpcinfer.ServerConfig{Keepalive: grpcinfer.Keepalive{Timeout: -1}}, "Keepalive.Timeout"},
	} {
		if _, err := grpcinfer.ServerOptions(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ServerOptions(%+v): err = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
