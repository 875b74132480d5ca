package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/infermesh/infermesh/benchmarks/internal/payload"
	"github.com/infermesh/infermesh/grpcinfer/oip"
)

const helperEnv = "MESHBENCH_UPSTREAM_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := Serve(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func TestHandler(t *testing.T) {
	t.Parallel()
	h := Handler()
	post := func(path, enc string, body []byte) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		if enc != "" {
			r.Header.Set("Content-Encoding", enc)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := post("/v1/chat/completions", "", payload.Chat())
	var reply struct {
		Object  string `json:"object"`
		Choices []any  `json:"choices"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &reply); w.Code != 200 || err != nil || reply.Object != "chat.completion" || len(reply.Choices) != 1 {
		t.Errorf("chat: %d %s", w.Code, w.Body)
	}
	emb := payload.Embeddings()
	enc, _ := zstd.NewWriter(nil)
	w = post("/v1/vectors", "zstd", enc.EncodeAll(emb, nil))
	enc.Close()
	if want := `{"ok":true,"bytes":` + itoa(len(emb)) + `}`; w.Code != 200 || w.Body.String() != want {
		t.Errorf("zstd vectors: %d %s, want %s", w.Code, w.Body, want)
	}
	if w = post("/v1/vectors", "gzip", []byte("not gzip")); w.Code != http.StatusBadRequest {
		t.Errorf("malformed gzip: %d, want 400", w.Code)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestServeLineProtocol(t *testing.T) {
	t.Parallel()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), inR, outW); outW.Close() }()
	rd := bufio.NewReader(outR)
	line, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready http=127.0.0.1:") || !strings.Contains(line, " grpc=127.0.0.1:") {
		t.Fatalf("ready line %q, %v", line, err)
	}
	addr := strings.TrimPrefix(strings.Fields(line)[1], "http=")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for range 3 {
		resp, err := (&http.Client{Transport: tr}).Post("http://"+addr+"/v1/chat/completions", "application/json", bytes.NewReader(payload.Chat()))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	io.WriteString(inW, "stats\n")
	line, _ = rd.ReadString('\n')
	var s Stats
	if err := json.Unmarshal([]byte(line), &s); err != nil || s.HTTPRequests != 3 || s.HTTPConns != 1 {
		t.Errorf("stats %q (%v): want 3 requests on 1 connection", line, err)
	}
	io.WriteString(inW, "bogus\n")
	if line, _ = rd.ReadString('\n'); !strings.HasPrefix(line, "error unknown command") {
		t.Errorf("unknown command answered %q", line)
	}
	inW.Close() // end of input: the upstream stops
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its input ended")
	}
}

// TestStartProcess runs the upstream as a child process (this test binary), calls it over
// HTTP and gRPC, and checks its counters.
func TestStartProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	h, err := Start(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := h.Stop(); err != nil {
			t.Error(err)
		}
		if !h.Proc.Exited() {
			t.Error("upstream still running after Stop")
		}
	}()
	resp, err := http.Post("http://"+h.HTTPAddr+"/v2/models/tensor/infer", "application/octet-stream", bytes.NewReader(payload.Tensor()))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"ok":true,"bytes":4194304}`; string(b) != want {
		t.Errorf("tensor reply %q, want %q", b, want)
	}
	http.DefaultClient.CloseIdleConnections()

	cc, err := grpc.NewClient("passthrough:///"+h.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for _, k := range payload.Kinds() {
		req, _ := payload.Infer(k)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := oip.NewClient(cc).Infer(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		n, err := oip.Output[int64](res, "n")
		if err != nil || len(n) != 1 || n[0] != int64(req.Inputs[0].Len()) {
			t.Errorf("%s: output %v, %v; want %d", k, n, err, req.Inputs[0].Len())
		}
	}
	s, err := h.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.HTTPRequests != 1 || s.GRPCRequests != 3 || s.HTTPConns != 1 || s.GRPCConns != 1 || s.BadRequests != 0 {
		t.Errorf("stats %+v", s)
	}
}
