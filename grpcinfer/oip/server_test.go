package oip_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rowSum is a small real model: y[i] = sum_j x[i][j] over a [batch, 4] FP32 input, plus an
// upper-cased copy of an optional BYTES input.
type rowSum struct {
	ready atomic.Bool
	calls atomic.Int64
}

func (m *rowSum) Ready() bool { return m.ready.Load() }

func (m *rowSum) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Name: "rowsum", Versions: []string{"1"}, Platform: "go",
		Inputs:  []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 4}}},
		Outputs: []oip.TensorMetadata{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1}}, {Name: "n", Datatype: oip.Int64, Shape: []int64{1}}},
	}
}

func (m *rowSum) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	m.calls.Add(1)
	x, err := oip.TensorData[float32](req.Inputs[0])
	if err != nil {
		return nil, err
	}
	rows := req.Inputs[0].Shape[0]
	y := make([]float32, rows)
	for i := range y {
		for _, v := range x[4*i : 4*i+4] {
			y[i] += v
		}
	}
	return &oip.InferResponse{Outputs: []oip.Tensor{
		oip.NewTensor("y", []int64{rows}, y),
		oip.NewTensor("n", []int64{1}, []int64{rows}),
	}}, nil
}

// serve starts a gRPC server on loopback TCP and returns a client connection to it.
func serve(t testing.TB, srv *oip.Server, sopts []grpc.ServerOption, dopts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, lis, srv, sopts, dopts...)
}

// serveOn serves srv on lis and returns a client connection to it.
func serveOn(t testing.TB, lis net.Listener, srv *oip.Server, sopts []grpc.ServerOption, dopts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	gs := grpc.NewServer(sopts...)
	srv.Register(gs)
	return serveGRPC(t, lis, gs, dopts...)
}

// serveGRPC serves gs on lis until the test ends and returns a client connection to it.
func serveGRPC(t testing.TB, lis net.Listener, gs *grpc.Server, dopts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		gs.Stop()
		<-done
	})
	return cc
}

func newRowSumServer(t testing.TB, ready func() bool) (*rowSum, *oip.Server) {
	t.Helper()
	model := &rowSum{}
	model.ready.Store(true)
	srv, err := oip.NewServer(oip.ServerConfig{Name: "test", Version: "0.1", Models: []oip.Model{model}, Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	return model, srv
}

func TestModelInferOverTCP(t *testing.T) {
	t.Parallel()
	_, srv := newRowSumServer(t, nil)
	c := oip.NewClient(serve(t, srv, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, raw := range []bool{true, false} {
		resp, err := c.Infer(ctx, &oip.InferRequest{
			ModelName: "rowsum", ID: "abc", Raw: raw,
			Inputs: []oip.Tensor{oip.NewTensor("x", []int64{2, 4}, []float32{1, 2, 3, 4, 0.5, 0.5, 0.5, -1.5})},
		})
		if err != nil {
			t.Fatalf("raw=%v: %v", raw, err)
		}
		if resp.Raw != raw {
			t.Fatalf("raw=%v: response Raw = %v (the server must answer in the request's form)", raw, resp.Raw)
		}
		y, err := oip.Output[float32](resp, "y")
		if err != nil || len(y) != 2 || y[0] != 10 || y[1] != 0 {
			t.Fatalf("raw=%v: y = %v, %v", raw, y, err)
		}
		if resp.ID != "abc" || resp.ModelName != "rowsum" {
			t.Fatalf("raw=%v: id/model = %q/%q", raw, resp.ID, resp.ModelName)
		}
	}

	// Requested outputs restrict the response.
	resp, err := c.Infer(ctx, &oip.InferRequest{ModelName: "rowsum", Raw: true,
		Inputs:  []oip.Tensor{oip.NewTensor("x", []int64{1, 4}, []float32{1, 1, 1, 1})},
		Outputs: []oip.RequestedOutput{{Name: "n"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Outputs) != 1 || resp.Outputs[0].Name != "n" {
		t.Fatalf("outputs = %+v, want only n", resp.Outputs)
	}

	// Metadata and health.
	meta, err := c.ModelMetadata(ctx, "rowsum", "")
	if err != nil || meta.Inputs[0].Shape[1] != 4 || meta.Outputs[1].Datatype != oip.Int64 {
		t.Fatalf("metadata = %+v, %v", meta, err)
	}
	name, version, _, err := c.ServerMetadata(ctx)
	if err != nil || name != "test" || version != "0.1" {
		t.Fatalf("server metadata = %q %q %v", name, version, err)
	}
	for what, f := range map[string]func() (bool, error){
		"live":  func() (bool, error) { return c.ServerLive(ctx) },
		"ready": func() (bool, error) { return c.ServerReady(ctx) },
		"model": func() (bool, error) { return c.ModelReady(ctx, "rowsum", "1") },
	} {
		if ok, err := f(); !ok || err != nil {
			t.Errorf("%s = %v, %v", what, ok, err)
		}
	}
}

func TestModelInferErrors(t *testing.T) {
	t.Parallel()
	var serverReady atomic.Bool
	serverReady.Store(true)
	model, srv := newRowSumServer(t, serverReady.Load)
	c := oip.NewClient(serve(t, srv, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	x := oip.NewTensor("x", []int64{1, 4}, []float32{1, 2, 3, 4})
	cases := []struct {
		name string
		req  *oip.InferRequest
		code codes.Code
		msg  string
	}{
		{"unknown model", &oip.InferRequest{ModelName: "nope", Inputs: []oip.Tensor{x}}, codes.NotFound, `unknown model "nope"`},
		{"unknown version", &oip.InferRequest{ModelName: "rowsum", ModelVersion: "9", Inputs: []oip.Tensor{x}}, codes.NotFound, `no version "9"`},
		{"wrong shape", &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{oip.NewTensor("x", []int64{1, 3}, []float32{1, 2, 3})}}, codes.InvalidArgument, `input "x": has shape [1 3] but model "rowsum" takes [-1 4]`},
		{"wrong type", &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{oip.NewTensor("x", []int64{1, 4}, []int32{1, 2, 3, 4})}}, codes.InvalidArgument, `input "x": has datatype INT32 but model "rowsum" takes FP32`},
		{"missing input", &oip.InferRequest{ModelName: "rowsum"}, codes.InvalidArgument, `input "x": is required by model "rowsum" but missing`},
		{"extra input", &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{x, oip.NewTensor("w", []int64{1}, []int64{1})}}, codes.InvalidArgument, `input "w": is not an input of model "rowsum"`},
		{"unknown output", &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{x}, Outputs: []oip.RequestedOutput{{Name: "z"}}}, codes.InvalidArgument, `has no output "z"`},
	}
	for _, tc := range cases {
		_, err := c.Infer(ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want %v containing %q", tc.name, err, tc.code, tc.msg)
		}
	}
	if n := model.calls.Load(); n != 0 {
		t.Fatalf("model ran %d times for invalid requests", n)
	}

	// A raw request whose byte count does not match its shape, sent with the generated client.
	_, err := c.Service().ModelInfer(ctx, &inferencepb.ModelInferRequest{ModelName: "rowsum",
		Inputs:           []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4}}},
		RawInputContents: [][]byte{make([]byte, 12)}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `input "x": shape [1 4] of FP32 needs 16 raw bytes but has 12`) {
		t.Fatalf("short raw input: %v", err)
	}

	// Not ready: the model, then the server gate.
	model.ready.Store(false)
	if _, err := c.Infer(ctx, &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{x}}); status.Code(err) != codes.Unavailable {
		t.Fatalf("model not ready: %v", err)
	}
	if ok, _ := c.ServerReady(ctx); ok {
		t.Fatal("ServerReady true while the model is not ready")
	}
	model.ready.Store(true)
	serverReady.Store(false)
	if ok, _ := c.ModelReady(ctx, "rowsum", ""); ok {
		t.Fatal("ModelReady true while the server gate is closed")
	}
	if _, err := c.ModelReady(ctx, "nope", ""); status.Code(err) != codes.NotFound {
		t.Fatalf("ModelReady(unknown) = %v", err)
	}
}

type failing struct{ err error }

func (f failing) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{Name: "f", Outputs: []oip.TensorMetadata{{Name: "o", Datatype: oip.FP32, Shape: []int64{1}}}}
}

func (f failing) Infer(context.Context, *oip.InferRequest) (*oip.InferResponse, error) {
	if f.err != nil {
		return nil, f.err
	}
	// A malformed output: two elements for a shape of one.
	return &oip.InferResponse{Outputs: []oip.Tensor{oip.NewTensor("o", []int64{1}, []float32{1, 2})}}, nil
}

func TestModelErrorsMapToStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{errors.New("boom"), codes.Internal},
		{status.Error(codes.ResourceExhausted, "busy"), codes.ResourceExhausted},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{nil, codes.Internal}, // malformed output
	} {
		srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{failing{tc.err}}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = srv.ModelInfer(context.Background(), &inferencepb.ModelInferRequest{ModelName: "f"})
		if status.Code(err) != tc.code {
			t.Errorf("model error %v -> %v, want %v", tc.err, err, tc.code)
		}
	}
}

func TestNewServerValidates(t *testing.T) {
	t.Parallel()
	bad := []struct {
		cfg  oip.ServerConfig
		want string
	}{
		{oip.ServerConfig{}, "Models is empty"},
		{oip.ServerConfig{Models: []oip.Model{nil}}, "Models[0] is nil"},
		{oip.ServerConfig{Models: []oip.Model{failing{}, failing{}}}, `model name "f" is used twice`},
		{oip.ServerConfig{Models: []oip.Model{metaOnly{oip.ModelMetadata{Name: "m"}}}}, "Outputs is empty"},
		{oip.ServerConfig{Models: []oip.Model{metaOnly{oip.ModelMetadata{Name: "m", Outputs: []oip.TensorMetadata{{Name: "o", Datatype: "F32"}}}}}}, `Outputs[0].Datatype "F32"`},
		{oip.ServerConfig{Models: []oip.Model{metaOnly{oip.ModelMetadata{Name: "m", Outputs: []oip.TensorMetadata{{Name: "o", Datatype: oip.FP32, Shape: []int64{-2}}}}}}}, "dimension -2"},
	}
	for _, tc := range bad {
		if _, err := oip.NewServer(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewServer: err = %v, want %q", err, tc.want)
		}
	}
}

type metaOnly struct{ meta oip.ModelMetadata }

func (m metaOnly) Metadata() oip.ModelMetadata { return m.meta }
func (m metaOnly) Infer(context.Context, *oip.InferRequest) (*oip.InferResponse, error) {
	return nil, errors.New("not used")
}
