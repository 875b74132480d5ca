package oip_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// TestModelStatisticsCountsRealCalls makes unary and streamed calls, good and bad, and checks
// what ModelStatistics reports against them: counts per version, and durations that cover at
// least the time the model spent.
func TestModelStatisticsCountsRealCalls(t *testing.T) {
	t.Parallel()
	const pause = 5 * time.Millisecond
	g := &wordGen{step: func(_ context.Context, _ int64, _ int) error { time.Sleep(pause); return nil }}
	srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{g, &rowSum{}}})
	if err != nil {
		t.Fatal(err)
	}
	cc := serve(t, srv, nil)
	c := oip.NewClient(cc)
	sc := newStreamClient(t, cc, oip.StreamConfig{})
	ctx := longCtx(t)
	start := time.Now()

	for range 3 { // unary, default version 2
		if _, err := c.Infer(ctx, prompt("a b")); err != nil {
			t.Fatal(err)
		}
	}
	for _, version := range []string{"1", ""} { // streamed, 2 tokens each: 2 pauses
		req := prompt("a b")
		req.ModelVersion = version
		s, err := sc.Infer(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := readAll(t, s); err != io.EOF {
			t.Fatal(err)
		}
	}
	bad := &oip.InferRequest{ModelName: "gen", Inputs: []oip.Tensor{oip.NewTensor("prompt", []int64{2}, [][]byte{{'a'}, {'b'}})}}
	for range 2 { // reaches version 2, fails the shape check
		if _, err := c.Infer(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad shape: %v", err)
		}
	}
	if _, err := c.Infer(ctx, &oip.InferRequest{ModelName: "gen", ModelVersion: "7"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown version: %v", err) // not counted: no version of the model ran
	}
	end := time.Now()

	r, err := c.Service().ModelStatistics(ctx, &inferencepb.ModelStatisticsRequest{Name: "gen"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ModelStats) != 2 || r.ModelStats[0].Version != "1" || r.ModelStats[1].Version != "2" {
		t.Fatalf("stats for %d versions: %v", len(r.ModelStats), r.ModelStats)
	}
	v1, v2 := r.ModelStats[0], r.ModelStats[1]
	for _, tc := range []struct {
		name          string
		st            *inferencepb.ModelStatistics
		success, fail uint64
		minInfer      time.Duration // the model's own pauses
	}{
		{"v1", v1, 1, 0, 2 * pause},
		{"v2", v2, 4, 2, 2 * pause}, // the unary calls do not pause
	} {
		is := tc.st.InferenceStats
		if is.Success.Count != tc.success || is.Fail.Count != tc.fail || tc.st.InferenceCount != tc.success || tc.st.ExecutionCount != tc.success {
			t.Errorf("%s: success %d fail %d inferences %d executions %d; want %d and %d", tc.name,
				is.Success.Count, is.Fail.Count, tc.st.InferenceCount, tc.st.ExecutionCount, tc.success, tc.fail)
		}
		for phase, d := range map[string]*inferencepb.StatisticDuration{"queue": is.Queue, "compute_input": is.ComputeInput,
			"compute_infer": is.ComputeInfer, "compute_output": is.ComputeOutput} {
			if d.Count != tc.success {
				t.Errorf("%s: %s counts %d, want one per success (%d)", tc.name, phase, d.Count, tc.success)
			}
		}
		if time.Duration(is.ComputeInfer.Ns) < tc.minInfer {
			t.Errorf("%s: compute_infer %v, less than the model's pauses %v", tc.name, time.Duration(is.ComputeInfer.Ns), tc.minInfer)
		}
		phases := is.Queue.Ns + is.ComputeInput.Ns + is.ComputeInfer.Ns + is.ComputeOutput.Ns
		if is.Success.Ns < phases || time.Duration(is.Success.Ns) > end.Sub(start) {
			t.Errorf("%s: success took %v, phases %v, the test %v", tc.name, time.Duration(is.Success.Ns), time.Duration(phases), end.Sub(start))
		}
		last := time.UnixMilli(int64(tc.st.LastInference))
		if last.Before(start.Truncate(time.Millisecond)) || last.After(end) {
			t.Errorf("%s: last inference %v outside the test's %v..%v", tc.name, last, start, end)
		}
	}
	if v2.InferenceStats.Fail.Ns == 0 {
		t.Error("v2: failures have no duration")
	}

	all, err := c.Service().ModelStatistics(ctx, &inferencepb.ModelStatisticsRequest{})
	if err != nil || len(all.ModelStats) != 3 || all.ModelStats[2].Name != "rowsum" || all.ModelStats[2].InferenceStats.Success.Count != 0 {
		t.Fatalf("all models: %v, %v", all, err)
	}
	one, err := c.Service().ModelStatistics(ctx, &inferencepb.ModelStatisticsRequest{Name: "gen", Version: "1"})
	if err != nil || len(one.ModelStats) != 1 || one.ModelStats[0].InferenceStats.Success.Count != 1 {
		t.Fatalf("gen version 1: %v, %v", one, err)
	}
	for _, req := range []*inferencepb.ModelStatisticsRequest{{Name: "nope"}, {Name: "gen", Version: "9"}} {
		if _, err := c.Service().ModelStatistics(ctx, req); status.Code(err) != codes.NotFound {
			t.Errorf("%v: %v, want NotFound", req, err)
		}
	}
	if _, err := c.Service().ModelStatistics(ctx, &inferencepb.ModelStatisticsRequest{Version: "1"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a version without a name: %v", err)
	}
}

// TestReplyNamesTheVersionUsed: a request that names no version is answered with the version
// that ran (the last listed); one that names a version gets that one.
func TestReplyNamesTheVersionUsed(t *testing.T) {
	t.Parallel()
	srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{&wordGen{}}})
	if err != nil {
		t.Fatal(err)
	}
	c := oip.NewClient(serve(t, srv, nil))
	for version, want := range map[string]string{"": "2", "1": "1", "2": "2"} {
		req := prompt("v")
		req.ModelVersion = version
		resp, err := c.Infer(longCtx(t), req)
		if err != nil {
			t.Fatalf("version %q: %v", version, err)
		}
		if resp.ModelVersion != want {
			t.Errorf("version %q: reply names %q, want %q", version, resp.ModelVersion, want)
		}
	}
}

// TestLongEchoesAreCut sends request values of about 8 KB where error messages repeat them:
// each echo is cut to 256 bytes, so the status message stays far below the 8 KiB that gRPC
// C-core clients allow for headers. The streamed error response cuts them alike.
func TestLongEchoesAreCut(t *testing.T) {
	t.Parallel()
	_, srv := newRowSumServer(t, nil)
	cc := serve(t, srv, nil)
	c := oip.NewClient(cc)
	ctx := longCtx(t)
	long := strings.Repeat("n", 8<<10)
	wideShape := make([]int64, 2000) // "[0 0 0 ...]" is about 4 KB; with 1 in front, 8 KB
	for i := range wideShape {
		wideShape[i] = 1000
	}
	x := oip.NewTensor("x", []int64{1, 4}, []float32{1, 2, 3, 4})
	cases := []struct {
		name string
		m    *inferencepb.ModelInferRequest
	}{
		{"model name", &inferencepb.ModelInferRequest{ModelName: long}},
		{"version", &inferencepb.ModelInferRequest{ModelName: "rowsum", ModelVersion: long}},
		{"tensor name", mustEncode(t, &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{oip.NewTensor(long, []int64{1}, []int64{1})}})},
		{"datatype", &inferencepb.ModelInferRequest{ModelName: "rowsum", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: long}}}},
		{"shape", &inferencepb.ModelInferRequest{ModelName: "rowsum", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: wideShape}}}},
		{"output name", mustEncode(t, &oip.InferRequest{ModelName: "rowsum", Inputs: []oip.Tensor{x}, Outputs: []oip.RequestedOutput{{Name: long}}})},
	}
	for _, tc := range cases {
		_, err := c.Service().ModelInfer(ctx, tc.m)
		st := status.Convert(err)
		if st.Code() == codes.OK || st.Code() == codes.Internal {
			t.Errorf("%s: %v, want the request refused", tc.name, err)
			continue
		}
		if n := len(st.Message()); n > 2*256+200 || !strings.Contains(st.Message(), "...") {
			t.Errorf("%s: status message of %d bytes: %.300s", tc.name, n, st.Message())
		}
	}

	// The same in the stream's error response.
	stream, err := inferencepb.NewGRPCInferenceServiceClient(cc).ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&inferencepb.ModelInferRequest{ModelName: long}); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	m, err := stream.Recv()
	if err != nil || len(m.ErrorMessage) > 2*256+200 || !strings.Contains(m.ErrorMessage, "unknown model") {
		t.Fatalf("streamed error response: %v, %.300q", err, m.GetErrorMessage())
	}
}

func mustEncode(t *testing.T, r *oip.InferRequest) *inferencepb.ModelInferRequest {
	t.Helper()
	m, err := oip.EncodeRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEchoCutsAtCharacterBoundaries: an echoed name of multi-byte characters is cut between
// characters, so the message stays valid UTF-8.
func TestEchoCutsAtCharacterBoundaries(t *testing.T) {
	t.Parallel()
	for _, name := range []string{strings.Repeat("é", 300), "a" + strings.Repeat("名", 300)} {
		err := (&oip.TensorError{Kind: "input", Name: name, Reason: "is bad"}).Error()
		if !utf8.ValidString(err) || len(err) > 256+40 || !strings.Contains(err, `..."`) {
			t.Errorf("TensorError text of %d bytes, valid UTF-8 %v: %.80q", len(err), utf8.ValidString(err), err)
		}
	}
}
