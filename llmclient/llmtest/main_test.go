package llmtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	openai "github.com/sashabaranov/go-openai"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newOpenAI returns a go-openai client for srv, through the server's own client.
func newOpenAI(srv *llmtest.Server) *openai.Client {
	cfg := openai.DefaultConfig("sk-test")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = srv.Client()
	return openai.NewClientWithConfig(cfg)
}

// newOpenAIGo returns an openai-go client for srv, through the server's own client, with
// the SDK's retries off unless opts turn them on.
func newOpenAIGo(srv *llmtest.Server, opts ...option.RequestOption) *oai.Client {
	c := oai.NewClient(append([]option.RequestOption{
		option.WithAPIKey("sk-test"),
		option.WithBaseURL(srv.URL + "/v1"),
		option.WithHTTPClient(srv.Client()),
		option.WithMaxRetries(0),
	}, opts...)...)
	return &c
}

// userChat is a one-message chat request.
func userChat(text string) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{
		Model:    openai.GPT4oMini,
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: text}},
	}
}

// rawResponse is a response read whole.
type rawResponse struct {
	status int
	header http.Header
	body   string
	err    error // from reading the body
}

// post sends a JSON body with srv's client and reads the whole response.
func post(t *testing.T, srv *llmtest.Server, path, body string) rawResponse {
	t.Helper()
	return do(t, srv.Client(), http.MethodPost, srv.URL+path, body)
}

func do(t *testing.T, c *http.Client, method, url, body string) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

// sseData returns the data payloads of an SSE body, in order.
func sseData(body string) []string {
	var out []string
	for _, ev := range strings.Split(body, "\n\n") {
		if d, ok := strings.CutPrefix(ev, "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

// An sseEvent is one event of an SSE body: its "event:" name (empty if none) and its data.
type sseEvent struct{ name, data string }

// sseEvents returns the events of an SSE body, in order; a last event cut short (no blank
// line after it) is returned too.
func sseEvents(body string) []sseEvent {
	var out []sseEvent
	for _, block := range strings.Split(body, "\n\n") {
		var ev sseEvent
		for _, line := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev.name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				ev.data = v
			}
		}
		if ev != (sseEvent{}) {
			out = append(out, ev)
		}
	}
	return out
}

// decode unmarshals s into a generic JSON value.
func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// asAPIError returns err as a go-openai *APIError, or fails.
func asAPIError(t *testing.T, err error) *openai.APIError {
	t.Helper()
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v (%T) is not an *openai.APIError", err, err)
	}
	return apiErr
}

// decodeJSON decodes and closes a 200 response.
func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
