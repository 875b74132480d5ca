package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// runMainEnv makes the test binary run the program's main instead of the tests, so that
// TestServeUntilSignal can run the real program as a child process and signal it.
const runMainEnv = "GRPCSERVER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// TestRun runs the demo end to end on a loopback port.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, "127.0.0.1:0", &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"health before the model is loaded: NOT_SERVING (ServerReady false)",
		"health after loading: SERVING (ServerReady true)",
		"req-raw-true (model version 1, raw contents true, usage 8 in / 8 out):",
		"req-raw-false (model version 1, raw contents false, usage 8 in / 8 out):",
		"xor(0, 0) = 0", "xor(0, 1) = 1", "xor(1, 0) = 1", "xor(1, 1) = 0",
		`bad shape: grpcinfer: /inference.GRPCInferenceService/ModelInfer: InvalidArgument: oip: input "x": has shape [1 3] but model "xor-mlp" takes [-1 2]`,
		`generator streamed "alive generations streamed keeps infermesh" in 5 responses (usage 5 in / 5 out)`,
		"statistics of xor-mlp version 1: 2 succeeded, 1 failed",
		"statistics of generator version 1: 1 succeeded, 0 failed",
		// The drain: health and readiness turn at once, a new call is refused, and the
		// generation that was streaming when the drain began finishes.
		"health during the drain: NOT_SERVING (ServerReady false)",
		"a new call during the drain: Unavailable",
		`the generation in flight finished: 12 responses, ending "ee two one"`,
		"drained and stopped after",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "= 1 ") != 4 || strings.Count(got, "= 0 ") != 4 {
		t.Errorf("XOR labels wrong:\n%s", got)
	}
}

// TestServeUntilSignal runs the program with -serve as a child process, calls it as an
// outside client would (health, reflection, ModelInfer, a streamed generation), then sends
// SIGTERM while a generation streams: the program drains, the generation finishes, and it
// exits 0.
func TestServeUntilSignal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-serve", "-addr", "127.0.0.1:0", "-drain-grace", "300ms", "-stop-timeout", "20s")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("no output; stderr: %s", stderr.String())
	}
	m := regexp.MustCompile(`^serving on (127\.0\.0\.1:\d+):`).FindStringSubmatch(lines.Text())
	if m == nil {
		t.Fatalf("first line %q does not give the address", lines.Text())
	}
	rest := make(chan string, 1)
	go func() { b, _ := io.ReadAll(stdout); rest <- string(b) }()

	cc, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", r, err)
	}
	if services := listServices(t, ctx, cc); !slices.Contains(services, "inference.GRPCInferenceService") {
		t.Fatalf("reflection lists %v", services)
	}
	if resp, err := oip.NewClient(cc).Infer(ctx, &oip.InferRequest{ModelName: "xor-mlp",
		Inputs: []oip.Tensor{oip.NewTensor("x", []int64{1, 2}, []float32{1, 0})}}); err != nil {
		t.Fatalf("ModelInfer: %v", err)
	} else if l, _ := oip.Output[int64](resp, "label"); l[0] != 1 {
		t.Fatalf("xor(1, 0) = %v", l)
	}
	gen, err := oip.NewStreamClient(cc, oip.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := gen.Infer(ctx, prompt("a b c d e f g h i j"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	text, n, err := readTokens(s)
	if err != nil || n != 10 || text != "j i h g f e d c b a" {
		t.Fatalf("the generation streaming at SIGTERM: %q in %d responses, %v", text, n, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v; stderr: %s", err, stderr.String())
	}
	if out := <-rest; !strings.Contains(out, "draining") || !strings.Contains(out, "stopped") {
		t.Fatalf("output after the first line: %s", out)
	}
}

func listServices(t *testing.T, ctx context.Context, cc *grpc.ClientConn) []string {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}

func TestXORMLP(t *testing.T) {
	for _, tc := range []struct{ x1, x2, want float64 }{{0, 0, 0}, {0, 1, 1}, {1, 0, 1}, {1, 1, 0}} {
		var h [2]float64
		for j := range h {
			h[j] = sigmoid(hiddenW[j][0]*tc.x1 + hiddenW[j][1]*tc.x2 + hiddenB[j])
		}
		y := sigmoid(outW[0]*h[0] + outW[1]*h[1] + outB)
		if d := y - tc.want; d > 1e-3 || d < -1e-3 {
			t.Errorf("xor(%v, %v) = %v", tc.x1, tc.x2, y)
		}
	}
}

func TestGeneratorTokens(t *testing.T) {
	req := prompt("  one two   three ")
	toks, words, err := generator{}.tokens(req)
	if err != nil || words != 3 || strings.Join(toks, "|") != "three| two| one" {
		t.Fatalf("tokens = %q, %d words, %v", toks, words, err)
	}
	req.Parameters = map[string]*inferencepb.InferParameter{"max_tokens": {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: 2}}}
	if toks, _, _ := (generator{}).tokens(req); len(toks) != 2 {
		t.Fatalf("max_tokens 2 gave %q", toks)
	}
}
