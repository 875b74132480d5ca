package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	pb "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// grpcFault is what the chaos server does to a call.
type grpcFault int

const (
	gOK grpcFault = iota
	gUnavailable
	gResourceExhausted // the server's load shedding, with a pushback hint
	gInternal
	gStall             // until the client's deadline
	gNoHealthyUpstream // Envoy's trailers-only local reply
	gMeshRetried       // UNAVAILABLE after the mesh already retried
	gPanic             // recovered by the server interceptor into INTERNAL
	gConnReset         // the TCP connection is closed under the call
	gStreamBreakAfter  // a server stream fails after its first messages
	gStreamStallAfter  // a server stream stalls after its first messages
)

var grpcFaultNames = map[grpcFault]string{
	gUnavailable: "unavailable", gResourceExhausted: "resource-exhausted", gInternal: "internal",
	gStall: "stall", gNoHealthyUpstream: "no-healthy-upstream", gMeshRetried: "mesh-retried",
	gPanic: "panic", gConnReset: "conn-reset", gStreamBreakAfter: "stream-break-after-2",
	gStreamStallAfter: "stream-stall-after-2",
}

// chaosModel is an identity model whose behaviour the test sets.
type chaosModel struct {
	fault atomic.Int32
	calls atomic.Int64
	conns *connSet
}

func (m *chaosModel) Metadata() oip.ModelMetadata {
	t := []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1}}}
	return oip.ModelMetadata{Name: "chaos", Inputs: t, Outputs: t}
}

func (m *chaosModel) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	m.calls.Add(1)
	if err := m.strike(ctx, grpcFault(m.fault.Load())); err != nil {
		return nil, err
	}
	return &oip.InferResponse{Outputs: req.Inputs}, nil
}

func (m *chaosModel) strike(ctx context.Context, f grpcFault) error {
	switch f {
	case gUnavailable:
		return status.Error(codes.Unavailable, "model replica restarting")
	case gResourceExhausted:
		return status.Error(codes.ResourceExhausted, "queue full")
	case gInternal:
		return status.Error(codes.Internal, "kernel failed")
	case gStall:
		<-ctx.Done()
		return ctx.Err()
	case gNoHealthyUpstream:
		return status.Error(codes.Unavailable, "no healthy upstream")
	case gMeshRetried:
		_ = grpc.SetTrailer(ctx, map[string][]string{"x-envoy-attempt-count": {"3"}})
		return status.Error(codes.Unavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
	case gPanic:
		panic("model bug")
	case gConnReset:
		m.conns.closeAll()
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// connSet tracks the server's connections so a fault can cut them.
type connSet struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connSet) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *connSet) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

// streamDesc is a server-streaming method for the stream faults.
var streamDesc = grpc.ServiceDesc{
	ServiceName: "infermesh.chaos.Stream",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{StreamName: "Generate", ServerStreams: true, Handler: func(srv any, ss grpc.ServerStream) error {
		m := srv.(*chaosModel)
		m.calls.Add(1)
		in := new(pb.ModelInferRequest)
		if err := ss.RecvMsg(in); err != nil {
			return err
		}
		f := grpcFault(m.fault.Load())
		if f != gStreamBreakAfter && f != gStreamStallAfter {
			if err := m.strike(ss.Context(), f); err != nil {
				return err
			}
		}
		for i := range 4 {
			if i == 2 && f == gStreamBreakAfter {
				return status.Error(codes.Unavailable, "connection reset mid-stream")
			}
			if i == 2 && f == gStreamStallAfter {
				<-ss.Context().Done()
				return ss.Context().Err()
			}
			if err := ss.SendMsg(&pb.ModelInferResponse{Id: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		return nil
	}}},
}

type grpcRig struct {
	model  *chaosModel
	srv    *grpc.Server
	done   chan struct{}
	cc     *grpc.ClientConn
	client *oip.Client
	policy *breaker.Policy
}

func newGRPCRig(t *testing.T, bc breaker.Config) *grpcRig {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs := &connSet{Listener: lis}
	r := &grpcRig{model: &chaosModel{conns: cs}, done: make(chan struct{})}
	sopts, err := grpcinfer.ServerOptions(grpcinfer.ServerConfig{MaxConcurrentCalls: 1024, ShedRetryAfter: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = grpc.NewServer(sopts...)
	osrv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{r.model}})
	if err != nil {
		t.Fatal(err)
	}
	osrv.Register(r.srv)
	r.srv.RegisterService(&streamDesc, r.model)
	go func() { defer close(r.done); _ = r.srv.Serve(cs) }()

	if bc.Backoff == (breaker.Backoff{}) {
		bc.Backoff = breaker.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	}
	if r.policy, err = breaker.New(bc); err != nil {
		t.Fatal(err)
	}
	dopts, err := grpcinfer.DialOptions(grpcinfer.ClientConfig{
		Policy:        r.policy,
		ServiceConfig: "{}", // the interceptors' retries only, so upstream counts are exact
		Default:       grpcinfer.MethodPolicy{PerTryTimeout: 400 * time.Millisecond, FirstMessageTimeout: firstToken, IdleTimeout: idle},
	})
	if err != nil {
		t.Fatal(err)
	}
	dopts = append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if r.cc, err = grpc.NewClient(lis.Addr().String(), dopts...); err != nil {
		t.Fatal(err)
	}
	r.client = oip.NewClient(r.cc)
	return r
}

func (r *grpcRig) close() {
	_ = r.cc.Close()
	r.srv.Stop()
	<-r.done
}

// infer makes one unary call and says how it ended.
func (r *grpcRig) infer() (outcome, string) {
	ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	start := time.Now()
	_, err := r.client.Infer(ctx, &oip.InferRequest{ModelName: "chaos", Raw: true,
		Inputs: []oip.Tensor{oip.NewTensor("x", []int64{4}, []float32{1, 2, 3, 4})}})
	return judgeGRPC(err, time.Since(start))
}

// stream opens a server stream and reads it to the end.
func (r *grpcRig) stream() (outcome, string) {
	ctx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	start := time.Now()
	desc := &streamDesc.Streams[0]
	s, err := r.cc.NewStream(ctx, desc, "/infermesh.chaos.Stream/Generate")
	if err == nil {
		err = s.SendMsg(&pb.ModelInferRequest{ModelName: "chaos"})
	}
	if err == nil {
		err = s.CloseSend()
	}
	for i := 0; err == nil && i < 100; i++ {
		err = s.RecvMsg(new(pb.ModelInferResponse))
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return judgeGRPC(err, time.Since(start))
}

func judgeGRPC(err error, took time.Duration) (outcome, string) {
	if took > callDeadline+slack {
		return lost, fmt.Sprintf("took %v", took)
	}
	if err == nil {
		return success, ""
	}
	var ge *grpcinfer.Error
	if errors.As(err, &ge) {
		return typedError, ""
	}
	return lost, fmt.Sprintf("%T: %v", err, err)
}

func (r *grpcRig) burst(stream bool) *tally {
	tl := &tally{}
	var wg sync.WaitGroup
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var o outcome
			var note string
			if stream {
				o, note = r.stream()
			} else {
				o, note = r.infer()
			}
			tl.add(o, note)
		}()
	}
	wg.Wait()
	return tl
}

// TestGRPCChaosMatrix runs every gRPC fault, unary and streamed, as bursts of
// concurrent calls through the client and server presets.
func TestGRPCChaosMatrix(t *testing.T) {
	var total [4]int
	for f := gUnavailable; f <= gStreamStallAfter; f++ {
		for _, stream := range []bool{false, true} {
			if !stream && (f == gStreamBreakAfter || f == gStreamStallAfter) {
				continue
			}
			t.Run(fmt.Sprintf("%s/stream=%v", grpcFaultNames[f], stream), func(t *testing.T) {
				r := newGRPCRig(t, breaker.Config{WindowSize: 1000, MinimumCalls: 1000})
				r.model.fault.Store(int32(f))
				tl := r.burst(stream)
				r.close()
				goleak.VerifyNone(t)
				for i, n := range tl.counts {
					total[i] += n
				}
				if tl.counts[lost] > 0 {
					t.Errorf("%d calls lost: %v", tl.counts[lost], tl.notes)
				}
				t.Logf("success %d, typed error %d, lost %d", tl.counts[success], tl.counts[typedError], tl.counts[lost])
			})
		}
	}
	t.Logf("grpc matrix: %d calls: success %d, typed error %d, lost %d",
		total[0]+total[1]+total[2]+total[3], total[success], total[typedError], total[lost])
}

// TestGRPCRetryAmplificationAndRecovery: under a total UNAVAILABLE outage the server
// sees at most 1 + the retry budget calls per logical call; the breaker opens, sheds
// everything while open, and closes once the server recovers.
func TestGRPCRetryAmplificationAndRecovery(t *testing.T) {
	const open = 300 * time.Millisecond
	r := newGRPCRig(t, breaker.Config{WindowSize: 200, MinimumCalls: 100, OpenDuration: open, HalfOpenCalls: 2})
	defer goleak.VerifyNone(t)
	defer r.close()
	r.model.fault.Store(int32(gUnavailable))
	calls := 0
	for range 3 {
		r.burst(false)
		calls += burst
	}
	ratio := float64(r.model.calls.Load()) / float64(calls)
	t.Logf("grpc outage: %d calls, %d upstream calls, amplification %.3f", calls, r.model.calls.Load(), ratio)
	if ratio > 1+0.20+float64(breaker.DefaultMinRetryConcurrency)/float64(burst) {
		t.Errorf("amplification %.3f exceeds 1 + the retry budget", ratio)
	}
	if r.policy.State() != breaker.StateOpen {
		t.Fatalf("breaker %v after the outage, want open", r.policy.State())
	}
	before := r.model.calls.Load()
	r.burst(false)
	if r.model.calls.Load() != before {
		t.Errorf("an open breaker let %d calls through", r.model.calls.Load()-before)
	}
	r.model.fault.Store(int32(gOK))
	time.Sleep(open + 50*time.Millisecond)
	for i := range 2 {
		if o, note := r.infer(); o != success {
			t.Fatalf("trial call %d: %d %s", i, o, note)
		}
	}
	if r.policy.State() != breaker.StateClosed {
		t.Errorf("breaker %v after recovery, want closed", r.policy.State())
	}
}

// TestGRPCStreamsNeverRetriedAfterFirstMessage: streams that fail after their first
// messages reach the server once per call.
func TestGRPCStreamsNeverRetriedAfterFirstMessage(t *testing.T) {
	for _, f := range []grpcFault{gStreamBreakAfter, gStreamStallAfter} {
		t.Run(grpcFaultNames[f], func(t *testing.T) {
			r := newGRPCRig(t, breaker.Config{WindowSize: 1000, MinimumCalls: 1000, MaxAttempts: 3})
			r.model.fault.Store(int32(f))
			tl := r.burst(true)
			n := r.model.calls.Load()
			r.close()
			goleak.VerifyNone(t)
			if n != burst {
				t.Errorf("%d stream opens for %d calls: a stream was retried after a message", n, burst)
			}
			if tl.counts[typedError] != burst {
				t.Errorf("outcomes %v: every stream should end with a typed error", tl.counts)
			}
		})
	}
}
