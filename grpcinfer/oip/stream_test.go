package oip_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
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
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
	"github.com/infermesh/infermesh/internal/cutlisten"
	"github.com/infermesh/infermesh/tracing"
)

// wordGen is a decoupled model: it streams the words of its "prompt" back, one "token"
// response per word, the last flagged final, and reports the word counts as token usage.
// step, when set, runs before response i of call n (1-based); its error ends the request.
type wordGen struct {
	calls atomic.Int64
	step  func(ctx context.Context, call int64, i int) error
}

func (g *wordGen) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Name: "gen", Versions: []string{"1", "2"}, Platform: "go",
		Inputs:  []oip.TensorMetadata{{Name: "prompt", Datatype: oip.Bytes, Shape: []int64{1}}},
		Outputs: []oip.TensorMetadata{{Name: "token", Datatype: oip.Bytes, Shape: []int64{1}}},
	}
}

func words(req *oip.InferRequest) ([]string, error) {
	p, err := oip.TensorData[[]byte](req.Inputs[0])
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(p[0])), nil
}

func token(w string) *oip.InferResponse {
	return &oip.InferResponse{Outputs: []oip.Tensor{oip.NewTensor("token", []int64{1}, [][]byte{[]byte(w)})}}
}

func (g *wordGen) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	ws, err := words(req)
	if err != nil {
		return nil, err
	}
	grpcinfer.ReportUsage(ctx, int64(len(ws)), int64(len(ws)))
	return token(strings.Join(ws, " ")), nil
}

func (g *wordGen) InferStream(ctx context.Context, req *oip.InferRequest, send oip.Sender) error {
	call := g.calls.Add(1)
	ws, err := words(req)
	if err != nil {
		return err
	}
	for i, w := range ws {
		if g.step != nil {
			if err := g.step(ctx, call, i); err != nil {
				return err
			}
		}
		if err := send(token(w), i == len(ws)-1); err != nil {
			return err
		}
		grpcinfer.ReportUsage(ctx, 0, 1)
	}
	grpcinfer.ReportUsage(ctx, int64(len(ws)), 0)
	return nil
}

func prompt(text string) *oip.InferRequest {
	return &oip.InferRequest{ModelName: "gen", ID: "req-7", Inputs: []oip.Tensor{oip.NewTensor("prompt", []int64{1}, [][]byte{[]byte(text)})}}
}

// genServer serves a wordGen with the grpcinfer server preset (usage trailers) on a loopback
// port whose connections the test may cut; dopts dial it.
func genServer(t *testing.T, g *wordGen, scfg grpcinfer.ServerConfig, dopts ...grpc.DialOption) (*grpc.ClientConn, *cutlisten.Listener) {
	t.Helper()
	srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{g}})
	if err != nil {
		t.Fatal(err)
	}
	sopts, err := grpcinfer.ServerOptions(scfg)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := cutlisten.New(inner)
	return serveOn(t, lis, srv, sopts, dopts...), lis
}

// cutGen serves a wordGen whose step may cut the server's connections (with cut), and
// returns it with a StreamClient that makes up to three attempts.
func cutGen(t *testing.T, step func(cut func(), ctx context.Context, call int64, i int) error) (*wordGen, *oip.StreamClient) {
	t.Helper()
	var lis *cutlisten.Listener
	g := &wordGen{step: func(ctx context.Context, call int64, i int) error { return step(lis.Cut, ctx, call, i) }}
	cc, l := genServer(t, g, grpcinfer.ServerConfig{})
	lis = l
	return g, newStreamClient(t, cc, oip.StreamConfig{Policy: breaker.Config{MaxAttempts: 3}})
}

func newStreamClient(t *testing.T, cc grpc.ClientConnInterface, cfg oip.StreamConfig) *oip.StreamClient {
	t.Helper()
	if cfg.Policy.Backoff.Initial == 0 {
		cfg.Policy.Backoff.Initial = 10 * time.Millisecond
	}
	c, err := oip.NewStreamClient(cc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readAll reads a stream to its end and returns the tokens and the final flags.
func readAll(t *testing.T, s *oip.InferStream) (tokens []string, finals []bool, err error) {
	t.Helper()
	defer s.Close()
	for range 1000 {
		r, err := s.Recv()
		if err != nil {
			return tokens, finals, err
		}
		tok, terr := oip.Output[[]byte](r, "token")
		if terr != nil {
			t.Fatal(terr)
		}
		tokens = append(tokens, string(tok[0]))
		finals = append(finals, r.Final())
	}
	t.Fatal("stream did not end")
	return
}

func longCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestStreamedGeneration streams a generation end to end over TCP: through the StreamClient
// alone, and on a connection with grpcinfer's client interceptors (as they are) on top; in raw
// and typed form; with the usage trailers, the final flag, the version that ran, and a client
// span that carries the model, the usage and the attempt.
func TestStreamedGeneration(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	in, err := tracing.New(tracing.Config{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	interceptors, err := grpcinfer.DialOptions(grpcinfer.ClientConfig{Default: grpcinfer.MethodPolicy{FirstMessageTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		dopts []grpc.DialOption
	}{{"plain", nil}, {"interceptors", interceptors}} {
		t.Run(tc.name, func(t *testing.T) {
			g := &wordGen{}
			cc, _ := genServer(t, g, grpcinfer.ServerConfig{Tracing: in}, tc.dopts...)
			c := newStreamClient(t, cc, oip.StreamConfig{Tracing: in})
			for _, raw := range []bool{false, true} {
				req := prompt("the quick brown fox")
				req.Raw = raw
				s, err := c.Infer(longCtx(t), req)
				if err != nil {
					t.Fatalf("raw=%v: %v", raw, err)
				}
				var got []*oip.InferResponse
				for {
					r, err := s.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatalf("raw=%v: Recv after %d: %v", raw, len(got), err)
					}
					got = append(got, r)
				}
				if len(got) != 4 || s.Delivered() != 4 {
					t.Fatalf("raw=%v: %d responses, want 4", raw, len(got))
				}
				for i, r := range got {
					tok, _ := oip.Output[[]byte](r, "token")
					want := strings.Fields("the quick brown fox")[i]
					if string(tok[0]) != want || r.Final() != (i == 3) || r.Raw != raw {
						t.Errorf("raw=%v: response %d = %q final=%v raw=%v", raw, i, tok[0], r.Final(), r.Raw)
					}
					if r.ModelName != "gen" || r.ModelVersion != "2" || r.ID != "req-7" {
						t.Errorf("raw=%v: response %d names %q version %q id %q; want gen, the default version 2, req-7", raw, i, r.ModelName, r.ModelVersion, r.ID)
					}
				}
				u, ok := s.Usage()
				if !ok || u.InputTokens != 4 || u.OutputTokens != 4 {
					t.Errorf("raw=%v: usage = %+v, %v; want 4 in / 4 out", raw, u, ok)
				}
				if _, err := s.Recv(); err != io.EOF {
					t.Errorf("Recv after the end = %v, want io.EOF again", err)
				}
			}
		})
	}
	// Each generation has a client span "infer gen" and, in the same trace, the server span
	// the interceptors started; both carry the model that answered, the usage and the time to
	// the first response.
	clientTraces := map[trace.TraceID]bool{}
	var servers []sdktrace.ReadOnlySpan
	for _, sp := range spans.Ended() {
		switch {
		case sp.SpanKind() == trace.SpanKindClient && sp.Name() == "infer gen":
			clientTraces[sp.SpanContext().TraceID()] = true
		case sp.SpanKind() == trace.SpanKindServer:
			servers = append(servers, sp)
		default:
			continue
		}
		attrs := attribute.NewSet(sp.Attributes()...)
		if v, _ := attrs.Value("gen_ai.usage.output_tokens"); v.AsInt64() != 4 {
			t.Errorf("%v span %s: gen_ai.usage.output_tokens = %v", sp.SpanKind(), sp.Name(), v.String())
		}
		if v, _ := attrs.Value("gen_ai.response.model"); v.AsString() != "gen" {
			t.Errorf("%v span %s: gen_ai.response.model = %v", sp.SpanKind(), sp.Name(), v.String())
		}
		if _, ok := attrs.Value("gen_ai.response.time_to_first_chunk"); !ok {
			t.Errorf("%v span %s has no time to first chunk", sp.SpanKind(), sp.Name())
		}
	}
	if len(clientTraces) != 4 || len(servers) != 4 {
		t.Fatalf("%d client spans named \"infer gen\" and %d server spans, want 4 each", len(clientTraces), len(servers))
	}
	for _, sp := range servers {
		if !clientTraces[sp.SpanContext().TraceID()] {
			t.Errorf("server span %s is not in the trace of a client span", sp.Name())
		}
	}
}

// TestStreamRetriedBeforeFirstResponse cuts the connection before the model's first response:
// the client opens a new stream and sends the request again, and the caller sees one clean
// sequence.
func TestStreamRetriedBeforeFirstResponse(t *testing.T) {
	t.Parallel()
	g, c := cutGen(t, func(cut func(), ctx context.Context, call int64, i int) error {
		if call == 1 && i == 0 {
			cut()
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	s, err := c.Infer(longCtx(t), prompt("one two three"))
	if err != nil {
		t.Fatal(err)
	}
	tokens, finals, err := readAll(t, s)
	if err != io.EOF {
		t.Fatalf("stream ended with %v after %v", err, tokens)
	}
	if strings.Join(tokens, " ") != "one two three" || !finals[2] || finals[0] {
		t.Fatalf("tokens = %q, finals %v", tokens, finals)
	}
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("the model ran %d times, want 2 (the cut attempt and the retry)", n)
	}
}

// TestStreamBrokenAfterFirstResponse cuts the connection once two responses have reached the
// caller: nothing is retried, and the caller gets a StreamError that says two responses were
// delivered.
func TestStreamBrokenAfterFirstResponse(t *testing.T) {
	t.Parallel()
	delivered := make(chan struct{})
	g, c := cutGen(t, func(cut func(), ctx context.Context, call int64, i int) error {
		if call == 1 && i == 2 {
			// The cut must come after the first two responses have crossed the wire (a
			// server's Send only queues them), so the caller says when.
			select {
			case <-delivered:
			case <-ctx.Done():
			}
			cut()
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	s, err := c.Infer(longCtx(t), prompt("one two three four"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var tokens []string
	for range 2 {
		r, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv after %v: %v", tokens, err)
		}
		tok, _ := oip.Output[[]byte](r, "token")
		tokens = append(tokens, string(tok[0]))
	}
	close(delivered)
	_, err = s.Recv()
	var se *oip.StreamError
	if !errors.As(err, &se) {
		t.Fatalf("stream ended with %v (%T) after %v, want a *StreamError", err, err, tokens)
	}
	if se.Delivered != 2 || strings.Join(tokens, " ") != "one two" || se.Attempts != 1 {
		t.Fatalf("delivered %d (%v) in %d attempts, want 2 in 1", se.Delivered, tokens, se.Attempts)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("status code = %v (%v), want Unavailable", status.Code(err), err)
	}
	if v := se.BreakerVerdict(); v.Retryable {
		t.Fatalf("verdict %+v: a stream that delivered must not be retryable", v)
	}
	if _, again := s.Recv(); again != err {
		t.Fatalf("Recv after the failure = %v, want the same error", again)
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("the model ran %d times, want 1: nothing is retried after a response was delivered", n)
	}
	if !strings.Contains(err.Error(), "after 2 responses") {
		t.Fatalf("error text %q does not say how much was delivered", err)
	}
}

// TestStreamStallOverTCP stalls a real stream after one response: Recv ends with
// ErrIdleTimeout within the idle timeout plus a margin that holds on a loaded machine, and the
// server's model sees its request cancelled.
func TestStreamStallOverTCP(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	cancelled := make(chan struct{})
	g := &wordGen{step: func(ctx context.Context, _ int64, i int) error {
		if i == 1 {
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		}
		return nil
	}}
	cc, _ := genServer(t, g, grpcinfer.ServerConfig{})
	c := newStreamClient(t, cc, oip.StreamConfig{IdleTimeout: idle})
	s, err := c.Infer(longCtx(t), prompt("a b c"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Recv()
	waited := time.Since(start)
	var se *oip.StreamError
	if !errors.As(err, &se) || !errors.Is(err, oip.ErrIdleTimeout) || se.Delivered != 1 {
		t.Fatalf("Recv = %v, want a StreamError with ErrIdleTimeout after 1 response", err)
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("status code = %v, want DeadlineExceeded", status.Code(err))
	}
	// The timer cannot fire early; the upper bound only rules out a wait that never ends.
	if waited < idle || waited > idle+20*time.Second {
		t.Fatalf("Recv waited %v with an idle timeout of %v", waited, idle)
	}
	select {
	case <-cancelled:
	case <-time.After(30 * time.Second):
		t.Fatal("the stalled request on the server was never cancelled")
	}
}

// TestStreamErrorResponses checks the failures a server reports inside the stream: before the
// first response (an unknown model: not retried, NOT_FOUND) and after it (the model's error,
// with the count delivered).
func TestStreamErrorResponses(t *testing.T) {
	t.Parallel()
	g := &wordGen{step: func(_ context.Context, _ int64, i int) error {
		if i == 1 {
			return status.Error(codes.ResourceExhausted, "out of KV cache")
		}
		return nil
	}}
	cc, _ := genServer(t, g, grpcinfer.ServerConfig{})
	c := newStreamClient(t, cc, oip.StreamConfig{Policy: breaker.Config{MaxAttempts: 3}})

	req := prompt("x")
	req.ModelName = "nope"
	_, err := c.Infer(longCtx(t), req)
	var se *oip.StreamError
	if !errors.As(err, &se) || status.Code(err) != codes.NotFound || se.Attempts != 1 || !strings.Contains(err.Error(), `unknown model "nope"`) {
		t.Fatalf("unknown model: %v", err)
	}

	s, err := c.Infer(longCtx(t), prompt("a b c"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = readAll(t, s)
	if !errors.As(err, &se) || se.Delivered != 1 || status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "out of KV cache") {
		t.Fatalf("model error after one response: %v", err)
	}
}

// TestStreamConcurrentRequests sends several requests over one stream with the generated
// client, as a Triton client does, and checks that every request is answered completely,
// each response carrying its request's id, with the final flag on each request's last.
func TestStreamConcurrentRequests(t *testing.T) {
	t.Parallel()
	g := &wordGen{}
	cc, _ := genServer(t, g, grpcinfer.ServerConfig{})
	stream, err := inferencepb.NewGRPCInferenceServiceClient(cc).ModelStreamInfer(longCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		m, err := oip.EncodeRequest(&oip.InferRequest{ModelName: "gen", ModelVersion: "1", ID: id,
			Inputs: []oip.Tensor{oip.NewTensor("prompt", []int64{1}, [][]byte{[]byte("w1 w2 w3")})}})
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	finals := map[string]int{}
	for range 100 {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil || m.ErrorMessage != "" {
			t.Fatalf("Recv: %v %q", err, m.GetErrorMessage())
		}
		r, err := oip.DecodeResponse(m.InferResponse)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := oip.Output[[]byte](r, "token")
		got[r.ID] = append(got[r.ID], string(tok[0]))
		if r.Final() {
			finals[r.ID]++
		}
		if r.ModelVersion != "1" {
			t.Errorf("version %q, want the 1 requested", r.ModelVersion)
		}
	}
	for _, id := range ids {
		if strings.Join(got[id], " ") != "w1 w2 w3" || finals[id] != 1 {
			t.Errorf("request %s: tokens %v, %d final", id, got[id], finals[id])
		}
	}
}

// TestStreamEmptyFinalAndInBandCodes checks Triton's conventions with the generated client:
// an empty final response for a request that asks for one when its model's last response was
// not final, and the code of an error response.
func TestStreamEmptyFinalAndInBandCodes(t *testing.T) {
	t.Parallel()
	srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{notFinal{}}})
	if err != nil {
		t.Fatal(err)
	}
	cc := serve(t, srv, nil)
	stream, err := inferencepb.NewGRPCInferenceServiceClient(cc).ModelStreamInfer(longCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	ask := &inferencepb.ModelInferRequest{ModelName: "nf", Id: "q", Parameters: map[string]*inferencepb.InferParameter{
		oip.EmptyFinalResponseParameter: {ParameterChoice: &inferencepb.InferParameter_BoolParam{BoolParam: true}}}}
	for _, m := range []*inferencepb.ModelInferRequest{ask, {ModelName: "nf", ModelVersion: "9", Id: "bad"}} {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	stream.CloseSend()
	var msgs []*inferencepb.ModelStreamInferResponse
	for range 10 {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	var sawEmptyFinal, sawError bool
	for _, m := range msgs {
		r := m.InferResponse
		final := r.Parameters[oip.FinalResponseParameter].GetBoolParam()
		switch {
		case r.Id == "q" && len(r.Outputs) == 0 && final:
			sawEmptyFinal = true
		case r.Id == "q" && (len(r.Outputs) != 1 || final):
			t.Errorf("the model's response: %d outputs, final %v", len(r.Outputs), final)
		case r.Id == "bad":
			sawError = m.ErrorMessage != "" && final &&
				codes.Code(r.Parameters[oip.ErrorCodeParameter].GetInt64Param()) == codes.NotFound
		}
	}
	if !sawEmptyFinal || !sawError || len(msgs) != 3 {
		t.Fatalf("%d messages, empty final %v, coded error %v: %v", len(msgs), sawEmptyFinal, sawError, msgs)
	}
}

// notFinal streams one response that it does not flag final.
type notFinal struct{}

func (notFinal) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{Name: "nf", Versions: []string{"1"}, Outputs: []oip.TensorMetadata{{Name: "o", Datatype: oip.Int64, Shape: []int64{1}}}}
}

func (notFinal) Infer(context.Context, *oip.InferRequest) (*oip.InferResponse, error) {
	return &oip.InferResponse{Outputs: []oip.Tensor{oip.NewTensor("o", []int64{1}, []int64{1})}}, nil
}

func (n notFinal) InferStream(ctx context.Context, req *oip.InferRequest, send oip.Sender) error {
	r, _ := n.Infer(ctx, req)
	return send(r, false)
}

func TestNewStreamClientValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  oip.StreamConfig
		want string
	}{
		{oip.StreamConfig{FirstResponseTimeout: -2}, "StreamConfig.FirstResponseTimeout -2ns is negative"},
		{oip.StreamConfig{IdleTimeout: -time.Second}, "StreamConfig.IdleTimeout -1s is negative"},
		{oip.StreamConfig{MaxStreamDuration: -time.Second}, "StreamConfig.MaxStreamDuration -1s is negative"},
		{oip.StreamConfig{Policy: breaker.Config{MaxAttempts: -1}}, "StreamConfig.Policy: "},
	} {
		if _, err := oip.NewStreamClient(nil, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewStreamClient(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := oip.NewStreamClient(nil, oip.StreamConfig{FirstResponseTimeout: breaker.NoTimeout, IdleTimeout: breaker.NoTimeout}); err != nil {
		t.Errorf("breaker.NoTimeout refused: %v", err)
	}
}

// probe is a decoupled model that records how many of its requests run at once. Each request
// waits until wantInside requests are inside (or a long timeout), then pause, then answers.
type probe struct {
	wantInside   int64
	pause        time.Duration
	inside, most atomic.Int64
}

func (p *probe) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{Name: "probe", Outputs: []oip.TensorMetadata{{Name: "o", Datatype: oip.Int64, Shape: []int64{1}}}}
}

func (p *probe) Infer(context.Context, *oip.InferRequest) (*oip.InferResponse, error) {
	return &oip.InferResponse{Outputs: []oip.Tensor{oip.NewTensor("o", []int64{1}, []int64{1})}}, nil
}

func (p *probe) InferStream(ctx context.Context, req *oip.InferRequest, send oip.Sender) error {
	n := p.inside.Add(1)
	defer p.inside.Add(-1)
	for m := p.most.Load(); n > m && !p.most.CompareAndSwap(m, n); m = p.most.Load() {
	}
	for deadline := time.Now().Add(30 * time.Second); p.inside.Load() < p.wantInside && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(p.pause)
	r, _ := p.Infer(ctx, req)
	return send(r, true)
}

// TestStreamRequestsLimit sends three requests over one stream: with MaxStreamRequests 3 they
// run at once; with 1 they run one after another, and the waiting shows as queue time.
func TestStreamRequestsLimit(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{3, 1} {
		p := &probe{wantInside: int64(limit), pause: 100 * time.Millisecond}
		srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{p}, MaxStreamRequests: limit})
		if err != nil {
			t.Fatal(err)
		}
		cc := serve(t, srv, nil)
		stream, err := inferencepb.NewGRPCInferenceServiceClient(cc).ModelStreamInfer(longCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := stream.Send(&inferencepb.ModelInferRequest{ModelName: "probe"}); err != nil {
				t.Fatal(err)
			}
		}
		stream.CloseSend()
		answers := 0
		for range 10 {
			m, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil || m.ErrorMessage != "" {
				t.Fatalf("limit %d: %v %q", limit, err, m.GetErrorMessage())
			}
			answers++
		}
		if answers != 3 || p.most.Load() != int64(limit) {
			t.Fatalf("limit %d: %d answers, at most %d requests at once", limit, answers, p.most.Load())
		}
		if limit == 1 {
			st, err := oip.NewClient(cc).Service().ModelStatistics(longCtx(t), &inferencepb.ModelStatisticsRequest{Name: "probe"})
			if err != nil {
				t.Fatal(err)
			}
			// The second request waited for the first (100ms), the third for both (200ms).
			if q := time.Duration(st.ModelStats[0].InferenceStats.Queue.Ns); q < 100*time.Millisecond {
				t.Fatalf("queue time %v for requests that waited their turn", q)
			}
		}
	}
}

// TestStreamRefusedWhenNotReady: a server that is not ready refuses a new stream with
// UNAVAILABLE, which the client retries as far as its policy allows.
func TestStreamRefusedWhenNotReady(t *testing.T) {
	t.Parallel()
	srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{&wordGen{}}, Ready: func() bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	c := newStreamClient(t, serve(t, srv, nil), oip.StreamConfig{Policy: breaker.Config{MaxAttempts: 2}})
	_, err = c.Infer(longCtx(t), prompt("a"))
	var se *oip.StreamError
	if !errors.As(err, &se) || status.Code(err) != codes.Unavailable || se.Attempts != 2 {
		t.Fatalf("Infer on a server that is not ready: %v", err)
	}
}

// TestStreamModelPanic: a panic in a streamed request becomes an INTERNAL error response; the
// server goes on.
func TestStreamModelPanic(t *testing.T) {
	t.Parallel()
	g := &wordGen{step: func(_ context.Context, _ int64, i int) error {
		if i == 1 {
			panic("index out of range in the sampler")
		}
		return nil
	}}
	cc, _ := genServer(t, g, grpcinfer.ServerConfig{})
	c := newStreamClient(t, cc, oip.StreamConfig{})
	for range 2 {
		s, err := c.Infer(longCtx(t), prompt("a b"))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = readAll(t, s)
		var se *oip.StreamError
		if !errors.As(err, &se) || se.Delivered != 1 || status.Code(err) != codes.Internal || !strings.Contains(err.Error(), `model "gen" panicked`) {
			t.Fatalf("after a panic: %v", err)
		}
	}
}
