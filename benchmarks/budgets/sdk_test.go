package budgets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
	"github.com/infermesh/infermesh/quota"
)

// cannedHost is the upstream host of the socket-free cases; llmclient keys its breaker and
// its quota by it.
const cannedHost = "api.invalid"

// cannedBase is the socket-free upstream: llmtest's canned chat completion, or the same
// answer as a stream of 11 events (8 content chunks, a finish chunk, a usage chunk, [DONE]).
func cannedBase(stream bool) http.RoundTripper {
	if stream {
		return llmtest.CannedStream()
	}
	return llmtest.CannedChat()
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
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != llmtest.CannedContent || resp.Usage.TotalTokens != 17 {
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
			if content.String() != llmtest.CannedContent || usage == nil || usage.TotalTokens != 17 {
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
