package grpcinfer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	pb "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
	"github.com/infermesh/infermesh/tracing"
)

// fast returns c with millisecond backoff unless c sets its own, so that retries in tests
// do not wait for breaker's 2 s default.
func fast(c breaker.Config) breaker.Config {
	if c.Backoff == (breaker.Backoff{}) {
		c.Backoff = breaker.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	}
	return c
}

// stateLog records the transitions of the breaker a ClientConfig builds, through its
// OnStateChange hook: the interceptors own the breaker, and the hook is how a user sees it.
// Transitions are delivered before the call that caused them returns, so once calls have
// returned the log is complete.
type stateLog struct {
	mu          sync.Mutex
	transitions []string
}

func (l *stateLog) hooks() breaker.Hooks {
	return breaker.Hooks{OnStateChange: func(_ string, from, to breaker.State) {
		l.mu.Lock()
		l.transitions = append(l.transitions, from.String()+">"+to.String())
		l.mu.Unlock()
	}}
}

func (l *stateLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.transitions, ",")
}

func TestBreakerOpensUnderUnavailableStormAndRecovers(t *testing.T) {
	t.Parallel()
	var storm atomic.Bool
	storm.Store(true)
	var served atomic.Int64
	svc := &echoServer{unary: func(ctx context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		served.Add(1)
		if storm.Load() {
			return nil, status.Error(codes.Unavailable, "backend restarting")
		}
		return echo(ctx, r)
	}}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}))
	var log stateLog
	var servedAtOpen atomic.Int64 // the server's count when the breaker first opened
	hooks := log.hooks()
	record := hooks.OnStateChange
	hooks.OnStateChange = func(name string, from, to breaker.State) {
		if to == breaker.StateOpen {
			servedAtOpen.CompareAndSwap(0, served.Load())
		}
		record(name, from, to)
	}
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Policy: fast(breaker.Config{
		Name: "storm", WindowSize: 10, MinimumCalls: 5, FailureRate: 50, OpenDuration: 50 * time.Millisecond,
		HalfOpenCalls: 1, MaxAttempts: 1, Hooks: hooks,
	})})
	ctx := longCtx(t, 20*time.Second)

	var err error
	calls := 0
	for ; calls < 50; calls++ {
		_, err = invokeEcho(ctx, cc, &pb.ModelInferRequest{})
		if errors.Is(err, breaker.ErrOpen) {
			break
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call %d during the storm: %v", calls, err)
		}
	}
	if !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("breaker not open after %d calls: %v", calls, err)
	}
	// It opened on the MinimumCalls-th failure. (On a slow machine the 50 ms open period
	// may pass before the next call, which then is a half-open trial, so the number of
	// calls before the first refusal may be larger.)
	if n := servedAtOpen.Load(); n != 5 {
		t.Fatalf("breaker opened after %d failed calls, want MinimumCalls 5", n)
	}
	var ge *grpcinfer.Error
	if !errors.As(err, &ge) || ge.Attempts != 0 || status.Code(err) != codes.Unavailable {
		t.Fatalf("rejected call: %#v, code %v", ge, status.Code(err))
	}
	if int(served.Load()) != calls {
		t.Fatalf("server saw %d calls, the client made %d before the breaker opened", served.Load(), calls)
	}
	// While open, calls never reach the server: a call the breaker refused left the
	// server's count as it was (the open period may pass early on a slow machine; then
	// the call is a half-open trial and may reach the server).
	for range 5 {
		before := served.Load()
		_, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{})
		if errors.Is(err, breaker.ErrOpen) && served.Load() != before {
			t.Fatal("a call the open breaker refused reached the server")
		}
	}

	// The storm ends; after the open period a trial call closes the breaker.
	storm.Store(false)
	recovered := false
	for i := 0; i < 100 && !recovered; i++ {
		time.Sleep(20 * time.Millisecond)
		_, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{})
		recovered = err == nil
	}
	got := log.String()
	if !recovered {
		t.Fatalf("breaker did not recover: transitions %s", got)
	}
	if !strings.HasPrefix(got, "closed>open,open>half-open") || !strings.HasSuffix(got, "half-open>closed") {
		t.Fatalf("transitions = %s", got)
	}
}

func TestRetriesBeforeAnyResponse(t *testing.T) {
	t.Parallel()
	type step struct {
		err     error
		trailer metadata.MD
		header  metadata.MD
	}
	cases := []struct {
		name      string
		steps     []step // what the server does on each call; then it succeeds
		attempts  int
		wantCalls int64
		wantCode  codes.Code
		minGap    time.Duration
		check     func(t *testing.T, err error)
	}{
		{name: "unavailable retried", steps: []step{{err: status.Error(codes.Unavailable, "x")}, {err: status.Error(codes.Unavailable, "x")}},
			attempts: 3, wantCalls: 3, wantCode: codes.OK},
		{name: "shed resource_exhausted retried", steps: []step{{err: status.Error(codes.ResourceExhausted, "busy")}},
			attempts: 3, wantCalls: 2, wantCode: codes.OK},
		{name: "resource_exhausted after headers not retried", steps: []step{{err: status.Error(codes.ResourceExhausted, "quota"), header: metadata.Pairs("k", "v")}},
			attempts: 3, wantCalls: 1, wantCode: codes.ResourceExhausted,
			check: func(t *testing.T, err error) {
				var ge *grpcinfer.Error
				if !errors.As(err, &ge) || ge.TrailersOnly || ge.Verdict.Retryable || ge.Verdict.Class != breaker.ClassOverloaded {
					t.Fatalf("error = %#v", ge)
				}
			}},
		{name: "pushback honoured", steps: []step{{err: status.Error(codes.Unavailable, "later"), trailer: metadata.Pairs("grpc-retry-pushback-ms", "150")}},
			attempts: 2, wantCalls: 2, wantCode: codes.OK, minGap: 150 * time.Millisecond},
		{name: "negative pushback stops retries", steps: []step{{err: status.Error(codes.Unavailable, "never"), trailer: metadata.Pairs("grpc-retry-pushback-ms", "-1")}},
			attempts: 3, wantCalls: 1, wantCode: codes.Unavailable},
		{name: "client error excluded and not retried", steps: []step{{err: status.Error(codes.InvalidArgument, "bad tensor")}},
			attempts: 3, wantCalls: 1, wantCode: codes.InvalidArgument,
			check: func(t *testing.T, err error) {
				var ge *grpcinfer.Error
				if !errors.As(err, &ge) || ge.Verdict.Outcome != breaker.OutcomeExcluded || ge.Verdict.Class != breaker.ClassClientError {
					t.Fatalf("error = %#v", ge)
				}
				if !errors.Is(err, breaker.ErrNotRetryable) || status.Convert(err).Message() != "bad tensor" {
					t.Fatalf("err = %v (status message %q)", err, status.Convert(err).Message())
				}
			}},
		{name: "envoy overloaded", steps: []step{{err: status.Error(codes.Unavailable, "upstream overflow"), trailer: metadata.Pairs("x-envoy-overloaded", "true")}},
			attempts: 2, wantCalls: 2, wantCode: codes.OK},
		{name: "envoy no healthy upstream", steps: []step{{err: status.Error(codes.Unavailable, "no healthy upstream")}},
			attempts: 3, wantCalls: 1, wantCode: codes.Unavailable,
			check: func(t *testing.T, err error) {
				var ge *grpcinfer.Error
				if !errors.As(err, &ge) || !ge.Envoy.NoHealthyUpstream || !ge.TrailersOnly || !ge.Verdict.Signals.NoHealthyUpstream {
					t.Fatalf("error = %#v", ge)
				}
				if !errors.Is(err, breaker.ErrNoHealthyUpstream) {
					t.Fatalf("err = %v, want ErrNoHealthyUpstream", err)
				}
			}},
		{name: "mesh already retried", steps: []step{{err: status.Error(codes.Unavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection failure"), trailer: metadata.Pairs("x-envoy-attempt-count", "3")}},
			attempts: 3, wantCalls: 1, wantCode: codes.Unavailable,
			check: func(t *testing.T, err error) {
				var ge *grpcinfer.Error
				if !errors.As(err, &ge) || ge.Envoy.AttemptCount != 3 || ge.Verdict.Class != breaker.ClassConnection || !errors.Is(err, breaker.ErrMeshRetried) {
					t.Fatalf("error = %#v (%v)", ge, err)
				}
			}},
		{name: "internal not retried", steps: []step{{err: status.Error(codes.Internal, "bug")}},
			attempts: 3, wantCalls: 1, wantCode: codes.Internal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			var mu sync.Mutex
			var times []time.Time
			svc := &echoServer{unary: func(ctx context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
				n := calls.Add(1)
				mu.Lock()
				times = append(times, time.Now())
				mu.Unlock()
				if int(n) <= len(tc.steps) {
					st := tc.steps[n-1]
					if st.header != nil {
						_ = grpc.SendHeader(ctx, st.header)
					}
					if st.trailer != nil {
						_ = grpc.SetTrailer(ctx, st.trailer)
					}
					return nil, st.err
				}
				return echo(ctx, r)
			}}
			srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}))
			cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Policy: fast(breaker.Config{MaxAttempts: tc.attempts})})
			resp, err := invokeEcho(longCtx(t, 20*time.Second), cc, &pb.ModelInferRequest{ModelName: "m", Id: "id-7"})
			if status.Code(err) != tc.wantCode {
				t.Fatalf("err = %v, want %v", err, tc.wantCode)
			}
			if err == nil && (resp.ModelName != "m" || resp.Id != "id-7") {
				t.Fatalf("reply not filled: %+v", resp)
			}
			if calls.Load() != tc.wantCalls {
				t.Fatalf("server calls = %d, want %d", calls.Load(), tc.wantCalls)
			}
			if tc.minGap > 0 {
				mu.Lock()
				gap := times[1].Sub(times[0])
				mu.Unlock()
				if gap < tc.minGap {
					t.Fatalf("retry came after %v, before the %v pushback", gap, tc.minGap)
				}
			}
			if tc.check != nil {
				tc.check(t, err)
			}
		})
	}
}

func TestErrorCarriesTheServerStatus(t *testing.T) {
	t.Parallel()
	svc := &echoServer{unary: func(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		return nil, status.Error(codes.NotFound, `unknown model "x"`)
	}}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}))
	for _, noPolicy := range []bool{true, false} {
		cc := dial(t, srv.Addr, grpcinfer.ClientConfig{NoPolicy: noPolicy})
		_, err := invokeEcho(longCtx(t, 10*time.Second), cc, &pb.ModelInferRequest{})
		st, ok := status.FromError(err)
		if !ok || st.Code() != codes.NotFound || st.Message() != `unknown model "x"` {
			t.Fatalf("NoPolicy %v: status = %v, %v", noPolicy, st, ok)
		}
		var ge *grpcinfer.Error
		if !errors.As(err, &ge) || ge.Method != echoMethod || !strings.Contains(err.Error(), echoMethod+": NotFound") {
			t.Fatalf("NoPolicy %v: err = %v", noPolicy, err)
		}
	}
}

func TestUnaryDeadlines(t *testing.T) {
	t.Parallel()
	svc := &echoServer{unary: func(ctx context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		if r.ModelName == "slow" {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return echo(ctx, r)
	}}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}))
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Policy: breaker.Config{MaxAttempts: 1}, Methods: map[string]grpcinfer.MethodPolicy{
		"/infermesh.test.Echo/": {Timeout: 150 * time.Millisecond},
	}})
	ctx := longCtx(t, 20*time.Second)
	for _, tc := range []struct {
		opts []grpc.CallOption
		want time.Duration
	}{
		{nil, 150 * time.Millisecond},
		{[]grpc.CallOption{grpcinfer.WithCallPolicy(grpcinfer.MethodPolicy{Timeout: 50 * time.Millisecond})}, 50 * time.Millisecond},
	} {
		start := time.Now()
		_, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{ModelName: "slow"}, tc.opts...)
		el := time.Since(start)
		if status.Code(err) != codes.DeadlineExceeded || el < tc.want || el > tc.want+2*time.Second {
			t.Fatalf("want DEADLINE_EXCEEDED after %v; got %v after %v", tc.want, err, el)
		}
	}
	// Caller cancellation is CANCELLED and excluded from the breaker.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := invokeEcho(cctx, cc, &pb.ModelInferRequest{ModelName: "slow"}, grpcinfer.WithCallPolicy(grpcinfer.MethodPolicy{Timeout: 10 * time.Second}))
	var ge *grpcinfer.Error
	if status.Code(err) != codes.Canceled || !errors.As(err, &ge) || ge.Verdict.Outcome != breaker.OutcomeExcluded {
		t.Fatalf("cancelled call: %v", err)
	}
	// Without a policy the method timeout still applies.
	cc2 := dial(t, srv.Addr, grpcinfer.ClientConfig{NoPolicy: true, Default: grpcinfer.MethodPolicy{Timeout: 80 * time.Millisecond}})
	if _, err := invokeEcho(ctx, cc2, &pb.ModelInferRequest{ModelName: "slow"}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("no policy: %v", err)
	}
}

func TestClientTracingAttempts(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	in, err := tracing.New(tracing.Config{TracerProvider: tp, Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	var traceparents sync.Map
	svc := &echoServer{unary: func(ctx context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		traceparents.Store(calls.Load(), md.Get("traceparent"))
		if calls.Add(1) == 1 {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("x-envoy-overloaded", "true"))
			return nil, status.Error(codes.Unavailable, "shed")
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-envoy-upstream-service-time", "3"))
		return echo(ctx, r)
	}}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}))
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Policy: fast(breaker.Config{MaxAttempts: 2}), Tracing: in})
	if _, err := invokeEcho(longCtx(t, 10*time.Second), cc, &pb.ModelInferRequest{ModelName: "mlp"}); err != nil {
		t.Fatal(err)
	}
	var call sdktrace.ReadOnlySpan
	var attempts []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch {
		case s.Name() == tracing.AttemptSpanName:
			attempts = append(attempts, s)
		case s.SpanKind() == trace.SpanKindClient:
			call = s
		}
	}
	if call == nil || call.Name() != "infer mlp" || len(attempts) != 2 {
		t.Fatalf("call span %v, %d attempt spans", call, len(attempts))
	}
	attrs := attrMap(call.Attributes())
	if attrs["infermesh.attempts"] != "2" || attrs["infermesh.breaker.state"] != "closed" || attrs["gen_ai.provider.name"] != "oip" {
		t.Fatalf("call span attributes = %v", attrs)
	}
	retried := false
	for _, ev := range call.Events() {
		retried = retried || ev.Name == tracing.RetryEvent
	}
	if !retried {
		t.Fatal("no retry event on the call span")
	}
	if a := attrMap(attempts[0].Attributes()); a["infermesh.mesh.overloaded"] != "true" {
		t.Fatalf("first attempt attributes = %v", a)
	}
	// Each attempt carried its own trace context.
	tp0, _ := traceparents.Load(int64(0))
	tp1, _ := traceparents.Load(int64(1))
	if len(tp0.([]string)) != 1 || len(tp1.([]string)) != 1 || tp0.([]string)[0] == tp1.([]string)[0] {
		t.Fatalf("traceparents = %v, %v", tp0, tp1)
	}
}

// openStream starts the test server stream with one request.
func openStream(ctx context.Context, cc *grpc.ClientConn, req *pb.ModelInferRequest, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	st, err := cc.NewStream(ctx, &echoDesc.Streams[0], streamMethod, opts...)
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(req); err != nil {
		return nil, err
	}
	return st, st.CloseSend()
}

// drain reads a stream to its end and returns the messages' ids and the final error (nil
// at io.EOF).
func drain(st grpc.ClientStream) ([]string, error) {
	var ids []string
	for range 1000 {
		m := new(pb.ModelInferResponse)
		if err := st.RecvMsg(m); err == io.EOF {
			return ids, nil
		} else if err != nil {
			return ids, err
		}
		ids = append(ids, m.Id)
	}
	return ids, errors.New("stream did not end")
}

// perID counts server calls per request id, so that concurrent or late calls of other
// requests never enter a count.
type perID struct{ m sync.Map }

func (c *perID) add(id string) int64 {
	n, _ := c.m.LoadOrStore(id, new(atomic.Int64))
	return n.(*atomic.Int64).Add(1)
}

func (c *perID) get(id string) int64 {
	if n, ok := c.m.Load(id); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// scriptedStreams is a server-stream handler that behaves as the request's model name says.
// It counts the calls per request id in calls and records in deadlines the time each call
// had left when it began.
func scriptedStreams(calls *perID, deadlines *sync.Map) func(*pb.ModelInferRequest, grpc.ServerStream) error {
	return func(req *pb.ModelInferRequest, ss grpc.ServerStream) error {
		n := calls.add(req.Id)
		if d, ok := ss.Context().Deadline(); ok {
			deadlines.Store(req.Id, time.Until(d))
		}
		send := func(id string) error { return ss.SendMsg(&pb.ModelInferResponse{Id: id}) }
		switch req.ModelName {
		case "flaky-start": // fails before the first message once, then streams
			if n == 1 {
				return status.Error(codes.Unavailable, "not yet")
			}
		case "slow-start": // first attempt never sends
			if n == 1 {
				<-ss.Context().Done()
				return nil
			}
		case "mid-failure":
			_ = send("a")
			_ = send("b")
			return status.Error(codes.Unavailable, "connection reset")
		case "stall":
			_ = send("a")
			<-ss.Context().Done()
			return nil
		case "long": // 8 messages 40ms apart: longer than the policy's 150ms Timeout
			for i := range 8 {
				time.Sleep(40 * time.Millisecond)
				if err := send(string(rune('a' + i))); err != nil {
					return err
				}
			}
			return nil
		case "forever": // until the client gives up
			for {
				if err := send("x"); err != nil {
					return err
				}
				time.Sleep(30 * time.Millisecond)
			}
		}
		_ = send("1")
		_ = send("2")
		return send("3")
	}
}

func TestServerStreams(t *testing.T) {
	t.Parallel()
	var calls perID
	var serverDeadline sync.Map // request id -> the time a server call had left
	svc := &echoServer{stream: scriptedStreams(&calls, &serverDeadline)}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}))
	ctx := longCtx(t, 60*time.Second)
	newCC := func(mp grpcinfer.MethodPolicy, cfg grpcinfer.ClientConfig) *grpc.ClientConn {
		cfg.Methods = map[string]grpcinfer.MethodPolicy{streamMethod: mp}
		return dial(t, srv.Addr, cfg)
	}
	withPolicy := grpcinfer.ClientConfig{Policy: fast(breaker.Config{MaxAttempts: 2})}
	noPolicy := grpcinfer.ClientConfig{NoPolicy: true}

	t.Run("retried before the first message", func(t *testing.T) {
		st, err := openStream(ctx, newCC(grpcinfer.MethodPolicy{}, withPolicy), &pb.ModelInferRequest{ModelName: "flaky-start", Id: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := drain(st)
		if err != nil || strings.Join(ids, "") != "123" || calls.get(t.Name()) != 2 {
			t.Fatalf("ids %v, err %v, server calls %d", ids, err, calls.get(t.Name()))
		}
	})
	t.Run("first-message timeout retried", func(t *testing.T) {
		// The first server call never sends; later ones send at once. The timeout is ample
		// for those, and a third attempt is allowed, so that a slow machine cannot turn a
		// healthy attempt into a second timeout and end the stream.
		cfg := grpcinfer.ClientConfig{Policy: fast(breaker.Config{MaxAttempts: 3})}
		st, err := openStream(ctx, newCC(grpcinfer.MethodPolicy{FirstMessageTimeout: time.Second}, cfg), &pb.ModelInferRequest{ModelName: "slow-start", Id: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := drain(st)
		if n := calls.get(t.Name()); err != nil || strings.Join(ids, "") != "123" || n < 2 || n > 3 {
			t.Fatalf("ids %v, err %v, server calls %d (want the stalled one, then the one that streamed)", ids, err, n)
		}
	})
	t.Run("never retried after a message", func(t *testing.T) {
		st, err := openStream(ctx, newCC(grpcinfer.MethodPolicy{}, withPolicy), &pb.ModelInferRequest{ModelName: "mid-failure", Id: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := drain(st)
		var ge *grpcinfer.Error
		if strings.Join(ids, "") != "ab" || !errors.As(err, &ge) || ge.Received != 2 || ge.Code != codes.Unavailable || ge.Verdict.Retryable {
			t.Fatalf("ids %v, err %#v", ids, err)
		}
		if calls.get(t.Name()) != 1 || status.Code(err) != codes.Unavailable {
			t.Fatalf("server calls %d, code %v", calls.get(t.Name()), status.Code(err))
		}
	})
	t.Run("no total timeout", func(t *testing.T) {
		// Timeout is for unary calls; a stream longer than it runs to its end.
		st, err := openStream(ctx, newCC(grpcinfer.MethodPolicy{Timeout: 100 * time.Millisecond, IdleTimeout: 5 * time.Second}, withPolicy), &pb.ModelInferRequest{ModelName: "long"})
		if err != nil {
			t.Fatal(err)
		}
		if ids, err := drain(st); err != nil || len(ids) != 8 {
			t.Fatalf("a 320ms stream under a 100ms Timeout: ids %v, err %v", ids, err)
		}
	})
	for _, cfg := range []grpcinfer.ClientConfig{withPolicy, noPolicy} {
		t.Run("idle timeout", func(t *testing.T) {
			st, err := openStream(ctx, newCC(grpcinfer.MethodPolicy{IdleTimeout: 100 * time.Millisecond}, cfg), &pb.ModelInferRequest{ModelName: "stall"})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			ids, err := drain(st)
			var ge *grpcinfer.Error
			if len(ids) != 1 || status.Code(err) != codes.DeadlineExceeded || !errors.As(err, &ge) || ge.Received != 1 || !strings.Contains(err.Error(), "idle timeout 100ms after 1 messages") {
				t.Fatalf("NoPolicy %v: ids %v, err %v", cfg.NoPolicy, ids, err)
			}
			if el := time.Since(start); el < 100*time.Millisecond || el > 3*time.Second {
				t.Fatalf("idle timeout after %v", el)
			}
		})
	}
	t.Run("max stream duration", func(t *testing.T) {
		// A stream that would never end is cut at MaxStreamDuration while messages flow,
		// and the server sees the limit as its deadline. The limit leaves ample time for
		// the first messages on a slow machine.
		const limit = time.Second
		cc := newCC(grpcinfer.MethodPolicy{MaxStreamDuration: limit}, noPolicy)
		start := time.Now()
		st, err := openStream(ctx, cc, &pb.ModelInferRequest{ModelName: "forever", Id: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := drain(st)
		el := time.Since(start)
		want := fmt.Sprintf("max duration %v after %d messages", limit, len(ids))
		if len(ids) == 0 || status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), want) {
			t.Fatalf("ids %d, err %v; want DEADLINE_EXCEEDED %q", len(ids), err, want)
		}
		left, ok := serverDeadline.Load(t.Name())
		if el < limit || !ok || left.(time.Duration) > limit {
			t.Fatalf("cut after %v; the server's deadline had %v left (set %v)", el, left, ok)
		}
	})
	t.Run("open breaker refuses streams", func(t *testing.T) {
		var log stateLog
		cc := newCC(grpcinfer.MethodPolicy{}, grpcinfer.ClientConfig{Policy: breaker.Config{
			MinimumCalls: 1, WindowSize: 1, MaxAttempts: 1, OpenDuration: time.Hour, Hooks: log.hooks()}})
		// slow-start: the first server call never sends a message
		st, err := openStream(ctx, cc, &pb.ModelInferRequest{ModelName: "slow-start", Id: t.Name()}, grpcinfer.WithCallPolicy(grpcinfer.MethodPolicy{FirstMessageTimeout: 50 * time.Millisecond}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := drain(st); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("timed-out first message: %v", err)
		}
		if got := log.String(); got != "closed>open" {
			t.Fatalf("breaker transitions %q after a failed stream start, want closed>open", got)
		}
		st, _ = openStream(ctx, cc, &pb.ModelInferRequest{})
		if _, err := drain(st); !errors.Is(err, breaker.ErrOpen) || status.Code(err) != codes.Unavailable {
			t.Fatalf("stream through an open breaker: %v", err)
		}
	})
}

func TestBidiStream(t *testing.T) {
	t.Parallel()
	svc := &echoServer{bidi: func(ss grpc.ServerStream) error {
		for {
			m := new(pb.ModelInferRequest)
			if err := ss.RecvMsg(m); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			if err := ss.SendMsg(&pb.ModelInferResponse{Id: m.Id}); err != nil {
				return err
			}
		}
	}}
	srv := startServer(t, svc, serverOptions(t, grpcinfer.ServerConfig{}))
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Default: grpcinfer.MethodPolicy{IdleTimeout: time.Second}})
	st, err := cc.NewStream(longCtx(t, 10*time.Second), &echoDesc.Streams[1], bidiMethod)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"x", "y"} {
		if err := st.SendMsg(&pb.ModelInferRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		m := new(pb.ModelInferResponse)
		if err := st.RecvMsg(m); err != nil || m.Id != id {
			t.Fatalf("echo %q: %v %v", id, m.Id, err)
		}
	}
	_ = st.CloseSend()
	if err := st.RecvMsg(new(pb.ModelInferResponse)); err != io.EOF {
		t.Fatalf("end of bidi stream: %v", err)
	}
}

func TestParseEnvoy(t *testing.T) {
	t.Parallel()
	e := grpcinfer.ParseEnvoy(metadata.Pairs("x-envoy-upstream-service-time", "12"), metadata.Pairs("x-envoy-overloaded", "true", "x-envoy-attempt-count", "2"))
	if !e.Overloaded || e.AttemptCount != 2 || e.UpstreamServiceTime != 12*time.Millisecond || e.NoHealthyUpstream {
		t.Fatalf("ParseEnvoy = %+v", e)
	}
	if e := grpcinfer.ParseEnvoy(nil, metadata.Pairs("x-envoy-attempt-count", "zero", "x-envoy-upstream-service-time", "-4")); e != (grpcinfer.Envoy{}) {
		t.Fatalf("malformed values parsed: %+v", e)
	}
}

func TestLocalFailuresClassified(t *testing.T) {
	t.Parallel()
	ctx := longCtx(t, 10*time.Second)

	// Nothing listens: no stream is ever opened, a connection failure, retryable.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, err = invokeEcho(ctx, dial(t, addr, grpcinfer.ClientConfig{Policy: fast(breaker.Config{MaxAttempts: 2})}), &pb.ModelInferRequest{})
	var ge *grpcinfer.Error
	if !errors.As(err, &ge) || ge.Code != codes.Unavailable || ge.Verdict.Class != breaker.ClassConnection || !ge.Verdict.Retryable || ge.Attempts != 2 {
		t.Fatalf("connection refused: %#v (%v)", ge, err)
	}

	// A request over the client's own send limit: the caller's fault, never retried.
	var served atomic.Int64
	srv := startServer(t, &echoServer{unary: func(ctx context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		served.Add(1)
		return echo(ctx, r)
	}}, serverOptions(t, grpcinfer.ServerConfig{}))
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Policy: fast(breaker.Config{MaxAttempts: 3}), MaxSendMsgSize: 1024})
	_, err = invokeEcho(ctx, cc, &pb.ModelInferRequest{RawInputContents: [][]byte{make([]byte, 4096)}})
	if !errors.As(err, &ge) || ge.Code != codes.ResourceExhausted || ge.Verdict.Outcome != breaker.OutcomeExcluded || ge.Attempts != 1 || served.Load() != 0 {
		t.Fatalf("oversized request: %#v (%v), served %d", ge, err, served.Load())
	}
}
