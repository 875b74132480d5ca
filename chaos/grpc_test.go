package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	pb "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
	"github.com/infermesh/infermesh/internal/cutlisten"
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
	opens perCall // server streams per call id
	conns *cutlisten.Listener
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
		m.conns.Cut()
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// callIDKey is the request metadata that tags a logical call, so that every attempt of it,
// whichever layer makes it, can be counted against it.
const callIDKey = "x-chaos-call"

// perCall counts events per logical call id.
type perCall struct{ m sync.Map }

func (c *perCall) add(id string) {
	n, _ := c.m.LoadOrStore(id, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
}

func (c *perCall) get(id string) int64 {
	if n, ok := c.m.Load(id); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// attemptCounter is a client stats handler: gRPC reports every attempt it begins to it,
// whether the interceptors' Policy or gRPC's own retry made the attempt.
type attemptCounter struct{ began perCall }

func (a *attemptCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (a *attemptCounter) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if b, ok := s.(*stats.Begin); ok && b.Client {
		md, _ := metadata.FromOutgoingContext(ctx)
		if id := md.Get(callIDKey); len(id) == 1 {
			a.began.add(id[0])
		}
	}
}
func (a *attemptCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (a *attemptCounter) HandleConn(context.Context, stats.ConnStats) {}

// breakerLog records the transitions of the rig's breaker through its OnStateChange hook.
// The hook reports a transition before the call that caused it returns, so once a burst
// has returned the log holds everything that burst did.
type breakerLog struct {
	mu          sync.Mutex
	transitions []string
}

func (l *breakerLog) record(_ string, from, to breaker.State) {
	l.mu.Lock()
	l.transitions = append(l.transitions, from.String()+">"+to.String())
	l.mu.Unlock()
}

// count returns how many times the transition from>to happened.
func (l *breakerLog) count(from, to breaker.State) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, tr := range l.transitions {
		if tr == from.String()+">"+to.String() {
			n++
		}
	}
	return n
}

// last returns the breaker's state after its last transition.
func (l *breakerLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.transitions) == 0 {
		return breaker.StateClosed.String()
	}
	tr := l.transitions[len(l.transitions)-1]
	return tr[strings.IndexByte(tr, '>')+1:]
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
		m.opens.add(in.Id)
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
	model    *chaosModel
	srv      *grpc.Server
	done     chan struct{}
	cc       *grpc.ClientConn
	client   *oip.Client
	breaker  breakerLog
	attempts attemptCounter
	ids      atomic.Int64
}

// rigPolicy is the method policy of the rig's client: the limits the tests need, set where
// grpcinfer takes time limits. PerTryTimeout leaves room for two attempts of a stalled call
// within the call deadline.
var rigPolicy = grpcinfer.MethodPolicy{PerTryTimeout: time.Second, FirstMessageTimeout: firstToken, IdleTimeout: idle}

// newGRPCRig starts the chaos server and a client of the presets with their defaults, but
// for the breaker settings in bc (its window, so that a burst is judged as the test needs,
// and a short backoff, so that a burst fits in the call deadline) and the rig's method
// policy.
func newGRPCRig(t *testing.T, bc breaker.Config) *grpcRig {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs := cutlisten.New(lis)
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
	bc.Hooks.OnStateChange = r.breaker.record
	dopts, err := grpcinfer.DialOptions(grpcinfer.ClientConfig{Policy: bc, Default: rigPolicy})
	if err != nil {
		t.Fatal(err)
	}
	dopts = append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(&r.attempts))
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

// streamResult is how one server stream ended.
type streamResult struct {
	id      string
	outcome outcome
	note    string
	err     error
	// received is how many messages reached the caller; attemptsAtFirst how many attempts
	// the client had begun when the first of them did (0 when none did).
	received        int
	attemptsAtFirst int64
}

// stream opens a server stream tagged with a call id of its own and reads it to the end.
func (r *grpcRig) stream() streamResult {
	res := streamResult{id: strconv.FormatInt(r.ids.Add(1), 10)}
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), callIDKey, res.id), callDeadline)
	defer cancel()
	start := time.Now()
	s, err := r.cc.NewStream(ctx, &streamDesc.Streams[0], "/infermesh.chaos.Stream/Generate")
	if err == nil {
		err = s.SendMsg(&pb.ModelInferRequest{ModelName: "chaos", Id: res.id})
	}
	if err == nil {
		err = s.CloseSend()
	}
	for err == nil && res.received < 100 {
		if err = s.RecvMsg(new(pb.ModelInferResponse)); err == nil {
			if res.received == 0 {
				res.attemptsAtFirst = r.attempts.began.get(res.id)
			}
			res.received++
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	res.err = err
	res.outcome, res.note = judgeGRPC(err, time.Since(start))
	return res
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

// each runs fn burst times concurrently and waits for all of them.
func each(fn func()) {
	var wg sync.WaitGroup
	for range burst {
		wg.Go(fn)
	}
	wg.Wait()
}

func (r *grpcRig) burst(stream bool) *tally {
	tl := &tally{}
	each(func() {
		if stream {
			res := r.stream()
			tl.add(res.outcome, res.note)
		} else {
			tl.add(r.infer())
		}
	})
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
// everything while open (only half-open trial calls reach the server), and closes once the
// server recovers.
func TestGRPCRetryAmplificationAndRecovery(t *testing.T) {
	const open = 300 * time.Millisecond
	const trials = 2
	r := newGRPCRig(t, breaker.Config{WindowSize: 200, MinimumCalls: 100, OpenDuration: open, HalfOpenCalls: trials})
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
	if r.breaker.count(breaker.StateClosed, breaker.StateOpen) != 1 {
		t.Fatalf("breaker transitions during the outage: %v, want it opened once", r.breaker.transitions)
	}
	// While the breaker is open nothing reaches the server. On a slow machine the open
	// period may end during the burst; each half-open period then admits its trial calls,
	// which fail and open the breaker again.
	before, halfOpened := r.model.calls.Load(), r.breaker.count(breaker.StateOpen, breaker.StateHalfOpen)
	r.burst(false)
	through := r.model.calls.Load() - before
	if allowed := int64(trials * (r.breaker.count(breaker.StateOpen, breaker.StateHalfOpen) - halfOpened)); through > allowed {
		t.Errorf("an open breaker let %d calls through, beyond %d half-open trials", through, allowed)
	}
	r.model.fault.Store(int32(gOK))
	time.Sleep(open + 50*time.Millisecond)
	for i := range trials {
		if o, note := r.infer(); o != success {
			t.Fatalf("trial call %d: %d %s (breaker %v)", i, o, note, r.breaker.transitions)
		}
	}
	if got := r.breaker.last(); got != breaker.StateClosed.String() {
		t.Errorf("breaker %s after recovery, want closed", got)
	}
}

// TestGRPCStreamsNeverRetriedAfterFirstMessage: once a stream's first message has reached
// the caller, no attempt of that call is ever begun again, by any layer; before it, the
// Policy may retry (a first-message timeout on a slow machine), within its attempts.
func TestGRPCStreamsNeverRetriedAfterFirstMessage(t *testing.T) {
	const attempts = 3
	for _, f := range []grpcFault{gStreamBreakAfter, gStreamStallAfter} {
		t.Run(grpcFaultNames[f], func(t *testing.T) {
			r := newGRPCRig(t, breaker.Config{WindowSize: 1000, MinimumCalls: 1000, MaxAttempts: attempts})
			r.model.fault.Store(int32(f))
			var mu sync.Mutex
			var results []streamResult
			each(func() {
				res := r.stream()
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			})
			r.close()
			goleak.VerifyNone(t)
			streamed := 0
			for _, res := range results {
				began, opened := r.attempts.began.get(res.id), r.model.opens.get(res.id)
				var ge *grpcinfer.Error
				if res.outcome != typedError || !errors.As(res.err, &ge) || ge.Received != res.received {
					t.Errorf("call %s: outcome %d %s, err %v after %d messages: want a typed error that counts them", res.id, res.outcome, res.note, res.err, res.received)
				}
				switch {
				case opened > began:
					t.Errorf("call %s: the server saw %d requests, the client began %d attempts", res.id, opened, began)
				case res.received > 0 && began != res.attemptsAtFirst:
					t.Errorf("call %s: %d attempts begun, %d of them after the first message reached the caller", res.id, began, began-res.attemptsAtFirst)
				case res.received == 0 && began > attempts:
					t.Errorf("call %s: %d attempts before any message, beyond the Policy's %d", res.id, began, attempts)
				}
				if res.received > 0 {
					streamed++
				}
			}
			if streamed == 0 {
				t.Fatal("no stream delivered a message: the test proved nothing")
			}
			t.Logf("%d of %d streams delivered messages before failing; the rest failed before their first", streamed, len(results))
		})
	}
}
