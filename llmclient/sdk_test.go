package llmclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	openaigo "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// sdkResult is what one SDK call gave its caller.
type sdkResult struct {
	text   string   // content, or the tool call's name and arguments
	events []string // a stream's event types (Responses) or chunk count marks (chat)
	err    error
}

// sdk runs the calls of one unmodified OpenAI client against baseURL through hc.
type sdk struct {
	name                           string
	chat, chatStream, tools, embed func(ctx context.Context) sdkResult
	responses, responsesStream     func(ctx context.Context) sdkResult
}

var weatherTool = openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
	Name: "weather", Parameters: map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}

func goOpenAI(baseURL string, hc *http.Client) sdk {
	cfg := openai.DefaultConfig(secretKey)
	cfg.BaseURL = baseURL
	cfg.HTTPClient = hc
	c := openai.NewClientWithConfig(cfg)
	chatReq := func(stream bool, tools bool) openai.ChatCompletionRequest {
		r := chatReq(stream)
		if tools {
			r.Tools = []openai.Tool{weatherTool}
			r.ToolChoice = "required"
		}
		return r
	}
	stream := func(ctx context.Context, tools bool) sdkResult {
		s, err := c.CreateChatCompletionStream(ctx, chatReq(true, tools))
		if err != nil {
			return sdkResult{err: err}
		}
		defer s.Close()
		var res sdkResult
		for range 10_000 {
			chunk, err := s.Recv()
			if errors.Is(err, io.EOF) {
				return res
			}
			if err != nil {
				res.err = err
				return res
			}
			res.events = append(res.events, "chunk")
			for _, ch := range chunk.Choices {
				res.text += ch.Delta.Content
				for _, tc := range ch.Delta.ToolCalls {
					res.text += tc.Function.Name + tc.Function.Arguments
				}
			}
		}
		return res
	}
	return sdk{
		name: "go-openai",
		chat: func(ctx context.Context) sdkResult {
			r, err := c.CreateChatCompletion(ctx, chatReq(false, false))
			if err != nil {
				return sdkResult{err: err}
			}
			return sdkResult{text: r.Choices[0].Message.Content}
		},
		chatStream: func(ctx context.Context) sdkResult { return stream(ctx, false) },
		tools:      func(ctx context.Context) sdkResult { return stream(ctx, true) },
		embed: func(ctx context.Context) sdkResult {
			r, err := c.CreateEmbeddings(ctx, openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: "hi"})
			if err != nil {
				return sdkResult{err: err}
			}
			return sdkResult{text: strings.Repeat("v", len(r.Data[0].Embedding))}
		},
		responses: func(ctx context.Context) sdkResult {
			r, err := c.CreateResponse(ctx, openai.CreateResponseRequest{Model: "gpt-4o", Input: "hi"})
			if err != nil {
				return sdkResult{err: err}
			}
			return sdkResult{text: r.GetOutputText()}
		},
		responsesStream: func(ctx context.Context) sdkResult {
			s, err := c.CreateResponseStream(ctx, openai.CreateResponseRequest{Model: "gpt-4o", Input: "hi"})
			if err != nil {
				return sdkResult{err: err}
			}
			defer s.Close()
			var res sdkResult
			for range 10_000 {
				ev, err := s.Recv()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						res.err = err
					}
					return res
				}
				res.events = append(res.events, string(ev.Type))
				if ev.Type == "response.output_text.delta" {
					res.text += ev.Delta
				}
				if ev.Type == "response.completed" {
					return res // go-openai reads on for [DONE], which a Responses stream never sends
				}
			}
			return res
		},
	}
}

func openAIGo(baseURL string, hc *http.Client) sdk {
	c := openaigo.NewClient(option.WithHTTPClient(hc), option.WithBaseURL(baseURL), option.WithAPIKey(secretKey))
	params := func(tools bool) openaigo.ChatCompletionNewParams {
		p := openaigo.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openaigo.ChatCompletionMessageParamUnion{openaigo.UserMessage("hello there")}}
		if tools {
			p.Tools = []openaigo.ChatCompletionToolUnionParam{openaigo.ChatCompletionFunctionTool(openaigo.FunctionDefinitionParam{
				Name: "weather", Parameters: openaigo.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}})}
			p.ToolChoice = openaigo.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openaigo.String("required")}
		}
		return p
	}
	stream := func(ctx context.Context, tools bool) sdkResult {
		s := c.Chat.Completions.NewStreaming(ctx, params(tools))
		defer s.Close()
		var res sdkResult
		acc := openaigo.ChatCompletionAccumulator{}
		for s.Next() {
			chunk := s.Current()
			acc.AddChunk(chunk)
			res.events = append(res.events, "chunk")
			for _, ch := range chunk.Choices {
				res.text += ch.Delta.Content
			}
		}
		res.err = s.Err()
		if tools && res.err == nil && len(acc.Choices) > 0 && len(acc.Choices[0].Message.ToolCalls) > 0 {
			tc := acc.Choices[0].Message.ToolCalls[0]
			res.text = tc.Function.Name + tc.Function.Arguments
		}
		return res
	}
	rparams := responses.ResponseNewParams{Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: openaigo.String("hi")}}
	return sdk{
		name: "openai-go",
		chat: func(ctx context.Context) sdkResult {
			r, err := c.Chat.Completions.New(ctx, params(false))
			if err != nil {
				return sdkResult{err: err}
			}
			return sdkResult{text: r.Choices[0].Message.Content}
		},
		chatStream: func(ctx context.Context) sdkResult { return stream(ctx, false) },
		tools:      func(ctx context.Context) sdkResult { return stream(ctx, true) },
		embed: func(ctx context.Context) sdkResult {
			r, err := c.Embeddings.New(ctx, openaigo.EmbeddingNewParams{Model: "text-embedding-3-small",
				Input: openaigo.EmbeddingNewParamsInputUnion{OfString: openaigo.String("hi")}})
			if err != nil {
				return sdkResult{err: err}
			}
			return sdkResult{text: strings.Repeat("v", len(r.Data[0].Embedding))}
		},
		responses: func(ctx context.Context) sdkResult {
			r, err := c.Responses.New(ctx, rparams)
			if err != nil {
				return sdkResult{err: err}
			}
			return sdkResult{text: r.OutputText()}
		},
		responsesStream: func(ctx context.Context) sdkResult {
			s := c.Responses.NewStreaming(ctx, rparams)
			defer s.Close()
			var res sdkResult
			for s.Next() {
				ev := s.Current()
				res.events = append(res.events, ev.Type)
				if ev.Type == "response.output_text.delta" {
					res.text += ev.Delta
				}
			}
			res.err = s.Err()
			return res
		},
	}
}

var responsesSequence = []string{
	"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
	"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
	"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
}

// TestSDKsEndToEnd: go-openai and openai-go, unmodified, make every kind of call
// through NewHTTPClient(Config{}) against llmtest and against an upstream written with
// httptest: each answer whole and in order, each call one upstream request.
func TestSDKsEndToEnd(t *testing.T) {
	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	lt := llmtest.NewTestServer(t, llmtest.WithChunks(3, "ok "), llmtest.WithEmbeddingDimension(2))
	type upstreamKind struct {
		name, url, text, args string
		hits                  func(path string) int
	}
	hu := newUpstream(t)
	for _, up := range []upstreamKind{
		{"httptest", hu.URL, "Hello there", `{"city":"Oslo"}`, hu.hits},
		{"llmtest", lt.URL, "ok ok ok ", `{"city":"llmtest"}`, func(path string) int {
			n := 0
			for _, r := range lt.Requests() {
				if r.Path == path {
					n++
				}
			}
			return n
		}},
	} {
		for _, mk := range []func(string, *http.Client) sdk{goOpenAI, openAIGo} {
			s := mk(up.url+"/v1", hc)
			ctx := context.Background()
			for _, tc := range []struct {
				call     string
				run      func(context.Context) sdkResult
				path     string
				text     string
				sequence []string
			}{
				{"chat", s.chat, "/v1/chat/completions", up.text, nil},
				{"chat stream", s.chatStream, "/v1/chat/completions", up.text, nil},
				{"tool-call deltas", s.tools, "/v1/chat/completions", "weather" + up.args, nil},
				{"embeddings", s.embed, "/v1/embeddings", "vv", nil},
				{"responses", s.responses, "/v1/responses", up.text, nil},
				{"responses stream", s.responsesStream, "/v1/responses", up.text, responsesSequence},
			} {
				before := up.hits(tc.path)
				res := tc.run(ctx)
				if res.err != nil {
					t.Errorf("%s, %s %s: %v", up.name, s.name, tc.call, res.err)
					continue
				}
				if res.text != tc.text {
					t.Errorf("%s, %s %s: got %q, want %q", up.name, s.name, tc.call, res.text, tc.text)
				}
				if tc.sequence != nil && strings.Join(res.events, ",") != strings.Join(tc.sequence, ",") {
					t.Errorf("%s, %s %s: events\n got %v\nwant %v", up.name, s.name, tc.call, res.events, tc.sequence)
				}
				if n := up.hits(tc.path) - before; n != 1 {
					t.Errorf("%s, %s %s: %d upstream requests, want 1", up.name, s.name, tc.call, n)
				}
			}
		}
	}
}
