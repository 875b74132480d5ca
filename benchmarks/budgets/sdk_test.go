package budgets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/quota"
)

// cannedHost is the upstream host of the socket-free cases; llmclient keys its breaker and
// its quota by it.
const cannedHost = "api.invalid"

// canned is a Base transport that answers every request at once with a fixed response, so
// that the socket-free cases measure the clients' own work per call with no socket and no
// server in the figure.
type canned struct {
	body        []byte
	contentType string
}

var _ http.RoundTripper = canned{}

func (c canned) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {c.contentType}},
		Body:          io.NopCloser(bytes.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       req,
	}, nil
}

// The canned answers: a chat completion of 8 tokens, and the same as a stream of 11 events
// (8 content chunks, a finish chunk, a usage chunk and [DONE]).
const (
	cannedContent = "tok tok tok tok tok tok tok tok "
	cannedChat    = `{"id":"chatcmpl-1","object":"chat.completion","created":1717000000,"model":"gpt-4o-mini-2024-07-18",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"` + cannedContent + `"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}`
	chunkHead = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-mini-2024-07-18",`
)

var cannedStream = strings.Repeat(chunkHead+`"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}],"usage":null}`+"\n\n", 8) +
	chunkHead + `"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}` + "\n\n" +
	chunkHead + `"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}` + "\n\n" +
	"data: [DONE]\n\n"

func cannedBase(stream bool) http.RoundTripper {
	if stream {
		return canned{body: []byte(cannedStream), contentType: "text/event-stream"}
	}
	return canned{body: []byte(cannedChat), contentType: "application/json"}
}

// newLLMClient returns llmclient's *http.Client over base, with lim as its Quota (nil: none).
func newLLMClient(base http.RoundTripper, lim *quota.Limiter) (*http.Client, error) {
	return llmclient.NewHTTPClient(llmclient.Config{Base: base, Quota: lim})
}

// generousLimits never refuse a call, so that admission itself is what is measured.
func generousLimits() map[string]quota.Limits {
	return map[string]quota.Limits{cannedHost: {RequestsPerMinute: 1 << 30, TokensPerMinute: 1 << 40}}
}

// sdk is go-openai over one *http.Client, making the chat call of a case.
type sdk struct {
	client *openai.Client
	req    openai.ChatCompletionRequest
}

// newSDK returns go-openai over hc for baseURL. A streamed request asks for the usage chunk
// itself (stream_options.include_usage), so that the upstream does the same work whether
// infermesh would have asked for it or not.
func newSDK(hc *http.Client, baseURL string, stream bool) *sdk {
	cfg := openai.DefaultConfig("sk-budgets")
	cfg.BaseURL = baseURL
	cfg.HTTPClient = hc
	req := openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hello there"}},
		Stream:   stream,
	}
	if stream {
		req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	}
	return &sdk{client: openai.NewClientWithConfig(cfg), req: req}
}

// unary makes one chat call and checks the canned answer came back whole.
func (s *sdk) unary(ctx context.Context) error {
	resp, err := s.client.CreateChatCompletion(ctx, s.req)
	if err != nil {
		return err
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != cannedContent || resp.Usage.TotalTokens != 17 {
		return fmt.Errorf("unexpected answer %+v", resp)
	}
	return nil
}

// stream makes one streamed chat call, reads it to the end and checks it came back whole.
func (s *sdk) stream(ctx context.Context) error {
	st, err := s.client.CreateChatCompletionStream(ctx, s.req)
	if err != nil {
		return err
	}
	defer st.Close()
	var content strings.Builder
	var usage *openai.Usage
	for range 100 {
		chunk, err := st.Recv()
		if errors.Is(err, io.EOF) {
			if content.String() != cannedContent || usage == nil || usage.TotalTokens != 17 {
				return fmt.Errorf("unexpected stream: content %q, usage %+v", content.String(), usage)
			}
			return nil
		}
		if err != nil {
			return err
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
		}
		for _, ch := range chunk.Choices {
			content.WriteString(ch.Delta.Content)
		}
	}
	return errors.New("stream did not end within 100 events")
}

// call returns the call of the case: streamed or not.
func (s *sdk) call(stream bool) func() error {
	ctx := context.Background()
	if stream {
		return func() error { return s.stream(ctx) }
	}
	return func() error { return s.unary(ctx) }
}
