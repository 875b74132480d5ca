package llmclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"
	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/internal/redistest"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

func TestMain(m *testing.M) {
	redistest.QuietLogs()
	goleak.VerifyTestMain(m)
}

// secretKey is the API key every test sends; no error may contain it.
const secretKey = "sk-test-4f9c2a7e81b3d6055aa1c0ffee"

// env is one test's primary server, infermesh transport and go-openai client, all in
// memory so that tests can run under testing/synctest.
type env struct {
	srv    *llmtest.Server
	tr     *llmclient.Transport
	client *openai.Client
}

// newEnv must be called inside the synctest bubble (or a plain test); the server and
// transport are closed by the returned cleanup, which the caller defers.
func newEnv(t *testing.T, cfg llmclient.Config, opts ...llmtest.Option) (*env, func()) {
	t.Helper()
	srv := llmtest.NewUnstartedServer(opts...)
	if cfg.Base == nil {
		cfg.Base = srv.Transport()
	}
	tr, err := llmclient.NewTransport(cfg)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	oc := openai.DefaultConfig(secretKey)
	oc.BaseURL = llmtest.InMemoryURL + "/v1"
	oc.HTTPClient = &http.Client{Transport: tr}
	return &env{srv: srv, tr: tr, client: openai.NewClientWithConfig(oc)}, func() {
		tr.CloseIdleConnections()
		srv.Close()
	}
}

func chatReq(stream bool) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hello there"}},
		Stream:   stream,
	}
}

// streamResult is what a caller collected from a stream.
type streamResult struct {
	content string
	chunks  int
	usage   *openai.Usage
	header  http.Header
	err     error // the error that ended the stream (nil for a clean io.EOF)
	openErr error // the error of CreateChatCompletionStream itself
}

func readStream(ctx context.Context, c *openai.Client, req openai.ChatCompletionRequest) streamResult {
	s, err := c.CreateChatCompletionStream(ctx, req)
	if err != nil {
		return streamResult{openErr: err}
	}
	defer s.Close()
	res := streamResult{header: s.Header()}
	for range 100_000 {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return res
		}
		if err != nil {
			res.err = err
			return res
		}
		res.chunks++
		if chunk.Usage != nil {
			res.usage = chunk.Usage
		}
		for _, ch := range chunk.Choices {
			res.content += ch.Delta.Content
		}
	}
	res.err = errors.New("stream too long")
	return res
}

func assertNoSecret(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && contains(err.Error(), secretKey) {
		t.Errorf("%s error leaks the API key: %v", what, err)
	}
}

func contains(s, sub string) bool { return sub != "" && strings.Contains(s, sub) }

// requestBodies decodes the JSON bodies the server received on path.
func requestBodies(t *testing.T, srv *llmtest.Server, path string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range srv.Requests() {
		if r.Path != path {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatalf("request %d body: %v", r.Seq, err)
		}
		out = append(out, m)
	}
	return out
}
