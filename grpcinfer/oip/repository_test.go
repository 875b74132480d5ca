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

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// loadingModel is rowSum with a Loader whose Load waits for the test (gate) and fails when
// told to.
type loadingModel struct {
	rowSum
	gate           chan struct{}
	fail           atomic.Bool
	loads, unloads atomic.Int64
}

func (m *loadingModel) Load(ctx context.Context) error {
	m.loads.Add(1)
	select {
	case <-m.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	if m.fail.Load() {
		return errors.New("weights file is truncated")
	}
	return nil
}

func (m *loadingModel) Unload(context.Context) error {
	m.unloads.Add(1)
	return nil
}

// repoServer serves a loadingModel and a health gate on one gRPC server, wired as the docs
// say: the gate's Serving gates the OIP server and its Loading is held during loads.
func repoServer(t *testing.T) (*loadingModel, *oip.Client, healthpb.HealthClient) {
	t.Helper()
	model := &loadingModel{gate: make(chan struct{})}
	model.ready.Store(true)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	gate, err := grpcinfer.NewHealthGate(gs, grpcinfer.HealthConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{model}, Ready: gate.Serving, Loading: gate.Loading})
	if err != nil {
		t.Fatal(err)
	}
	srv.Register(gs)
	cc := serveGRPC(t, lis, gs)
	gate.SetReady(true)
	return model, oip.NewClient(cc), healthpb.NewHealthClient(cc)
}

func healthOf(t *testing.T, h healthpb.HealthClient) string {
	t.Helper()
	r, err := h.Check(longCtx(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.String()
}

func x14() oip.Tensor { return oip.NewTensor("x", []int64{1, 4}, []float32{1, 2, 3, 4}) }

func index(t *testing.T, c *oip.Client, ready bool) []string {
	t.Helper()
	r, err := c.Service().RepositoryIndex(longCtx(t), &inferencepb.RepositoryIndexRequest{Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range r.Models {
		out = append(out, m.Name+"/"+m.Version+" "+m.State+" "+m.Reason)
	}
	return out
}

// TestLoadUnloadDriveReadinessAndHealth loads and unloads a model over the RPCs: health is
// NOT_SERVING and ModelReady false while it loads, ModelReady false and inference refused
// while it is unloaded, and the index says so.
func TestLoadUnloadDriveReadinessAndHealth(t *testing.T) {
	t.Parallel()
	model, c, health := repoServer(t)
	ctx := longCtx(t)
	svc := c.Service()

	if got := index(t, c, false); strings.Join(got, ",") != "rowsum/1 READY " {
		t.Fatalf("index = %q", got)
	}
	// Unload: refused at once, index UNAVAILABLE "unloaded"; health stays SERVING (the server
	// still serves whatever else it has), ServerReady does not count an unloaded model.
	r, err := svc.RepositoryModelUnload(ctx, &inferencepb.RepositoryModelUnloadRequest{ModelName: "rowsum"})
	if err != nil || !r.IsUnloaded || r.ModelName != "rowsum" {
		t.Fatalf("unload = %v, %v", r, err)
	}
	if ok, _ := c.ModelReady(ctx, "rowsum", ""); ok {
		t.Fatal("ModelReady true after unload")
	}
	if _, err := c.Infer(ctx, &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{x14()}}); status.Code(err) != codes.Unavailable {
		t.Fatalf("infer on an unloaded model: %v", err)
	}
	if got := index(t, c, false); strings.Join(got, ",") != "rowsum/1 UNAVAILABLE unloaded" {
		t.Fatalf("index after unload = %q", got)
	}
	if got := index(t, c, true); len(got) != 0 {
		t.Fatalf("ready index after unload = %q", got)
	}
	if ok, _ := c.ServerReady(ctx); !ok {
		t.Fatal("ServerReady false: an unloaded model should not count")
	}
	if model.unloads.Load() != 1 {
		t.Fatalf("Unload ran %d times", model.unloads.Load())
	}

	// Load: while Load runs, health NOT_SERVING, ModelReady false, index LOADING.
	loaded := make(chan error, 1)
	go func() {
		_, err := svc.RepositoryModelLoad(ctx, &inferencepb.RepositoryModelLoadRequest{ModelName: "rowsum"})
		loaded <- err
	}()
	for i := 0; model.loads.Load() == 0; i++ {
		if i > 3000 {
			t.Fatal("Load never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h := healthOf(t, health); h != "NOT_SERVING" {
		t.Fatalf("health while loading = %s", h)
	}
	if ok, _ := c.ModelReady(ctx, "rowsum", ""); ok {
		t.Fatal("ModelReady true while loading")
	}
	if got := index(t, c, false); strings.Join(got, ",") != "rowsum/1 LOADING " {
		t.Fatalf("index while loading = %q", got)
	}
	if _, err := c.Infer(ctx, &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{x14()}}); status.Code(err) != codes.Unavailable {
		t.Fatalf("infer while loading: %v", err)
	}
	close(model.gate)
	if err := <-loaded; err != nil {
		t.Fatalf("load: %v", err)
	}
	if h := healthOf(t, health); h != "SERVING" {
		t.Fatalf("health after loading = %s", h)
	}
	if ok, _ := c.ModelReady(ctx, "rowsum", ""); !ok {
		t.Fatal("ModelReady false after loading")
	}
	if _, err := c.Infer(ctx, &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{x14()}}); err != nil {
		t.Fatalf("infer after loading: %v", err)
	}

	// A failed load leaves the model UNAVAILABLE with the reason, and health SERVING again.
	model.fail.Store(true)
	_, err = svc.RepositoryModelLoad(ctx, &inferencepb.RepositoryModelLoadRequest{ModelName: "rowsum"})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "weights file is truncated") {
		t.Fatalf("failed load: %v", err)
	}
	if got := index(t, c, false); strings.Join(got, ",") != "rowsum/1 UNAVAILABLE load failed: weights file is truncated" {
		t.Fatalf("index after a failed load = %q", got)
	}
	if h := healthOf(t, health); h != "SERVING" {
		t.Fatalf("health after a failed load = %s", h)
	}
}

// TestUnloadWaitsForRunningRequests unloads a model while a streamed request runs on it: the
// unload waits for it, and the request completes.
func TestUnloadWaitsForRunningRequests(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{})
	g := &wordGen{step: func(ctx context.Context, _ int64, i int) error {
		if i == 1 {
			close(started)
			<-release
		}
		return nil
	}}
	srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{g}})
	if err != nil {
		t.Fatal(err)
	}
	cc := serve(t, srv, nil)
	c := newStreamClient(t, cc, oip.StreamConfig{})
	s, err := c.Infer(longCtx(t), prompt("a b c"))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	unloaded := make(chan error, 1)
	go func() {
		_, err := oip.NewClient(cc).Service().RepositoryModelUnload(longCtx(t), &inferencepb.RepositoryModelUnloadRequest{ModelName: "gen"})
		unloaded <- err
	}()
	// New requests are refused as soon as the unload begins.
	for i := 0; ; i++ {
		if ok, _ := oip.NewClient(cc).ModelReady(longCtx(t), "gen", ""); !ok {
			break
		}
		if i > 3000 {
			t.Fatal("the model stayed ready during the unload")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-unloaded:
		t.Fatalf("unload returned (%v) while a request was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	tokens, _, err := readAll(t, s)
	if err != io.EOF || strings.Join(tokens, " ") != "a b c" {
		t.Fatalf("the running request: %v, %v", tokens, err)
	}
	if err := <-unloaded; err != nil {
		t.Fatalf("unload: %v", err)
	}
}

// TestRepositoryRequestForms checks KServe's form of the load request (the model's name in
// field 1), and the errors for a named repository, parameters and unknown models.
func TestRepositoryRequestForms(t *testing.T) {
	t.Parallel()
	_, srv := newRowSumServer(t, nil)
	cc := serve(t, srv, nil)
	ctx := longCtx(t)
	svc := inferencepb.NewGRPCInferenceServiceClient(cc)

	// KServe's RepositoryModelUnloadRequest and RepositoryModelLoadRequest: model_name = 1.
	kserve := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "rowsum")
	var unload inferencepb.RepositoryModelUnloadRequest
	var load inferencepb.RepositoryModelLoadRequest
	for _, m := range []proto.Message{&unload, &load} {
		if err := proto.Unmarshal(kserve, m); err != nil {
			t.Fatal(err)
		}
	}
	ur, err := svc.RepositoryModelUnload(ctx, &unload)
	if err != nil || ur.ModelName != "rowsum" || !ur.IsUnloaded {
		t.Fatalf("KServe-form unload = %v, %v", ur, err)
	}
	lr, err := svc.RepositoryModelLoad(ctx, &load)
	if err != nil || lr.ModelName != "rowsum" || !lr.IsLoaded {
		t.Fatalf("KServe-form load = %v, %v", lr, err)
	}
	// KServe's response fields on the wire: model_name = 1 (string), isLoaded = 2 (bool).
	wire, _ := proto.Marshal(lr)
	want := protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), kserve...), 2, protowire.VarintType), 1)
	if string(wire) != string(want) {
		t.Fatalf("load response on the wire = % x, want % x", wire, want)
	}

	for _, tc := range []struct {
		req  *inferencepb.RepositoryModelLoadRequest
		code codes.Code
		msg  string
	}{
		{&inferencepb.RepositoryModelLoadRequest{RepositoryName: "models", ModelName: "rowsum"}, codes.NotFound, `no repository "models"`},
		{&inferencepb.RepositoryModelLoadRequest{ModelName: "nope"}, codes.NotFound, `unknown model "nope"`},
		{&inferencepb.RepositoryModelLoadRequest{}, codes.InvalidArgument, "model_name is empty"},
		{&inferencepb.RepositoryModelLoadRequest{ModelName: "rowsum", Parameters: map[string]*inferencepb.ModelRepositoryParameter{
			"config": {ParameterChoice: &inferencepb.ModelRepositoryParameter_StringParam{StringParam: "{}"}}}}, codes.InvalidArgument, `parameter "config" is not supported`},
	} {
		if _, err := svc.RepositoryModelLoad(ctx, tc.req); status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("load %v: %v, want %v %q", tc.req, err, tc.code, tc.msg)
		}
	}
	if _, err := svc.RepositoryIndex(ctx, &inferencepb.RepositoryIndexRequest{RepositoryName: "x"}); status.Code(err) != codes.NotFound {
		t.Errorf("index of a named repository: %v", err)
	}
}
