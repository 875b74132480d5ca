package llmtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	openai "github.com/sashabaranov/go-openai"
)

// A go-openai client talks to the server as to the OpenAI API.
func ExampleNewServer() {
	srv := llmtest.NewServer(llmtest.WithChunks(3, "hello "))
	defer srv.Close()

	cfg := openai.DefaultConfig("sk-test")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = srv.Client()
	client := openai.NewClientWithConfig(cfg)

	resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model:    openai.GPT4oMini,
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Say hello"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.ID, resp.Model)
	fmt.Printf("%q\n", resp.Choices[0].Message.Content)
	fmt.Println(resp.Usage.PromptTokens == llmtest.ChatPromptTokens("Say hello"), resp.Usage.PromptTokens, resp.Usage.CompletionTokens)
	// Output:
	// chatcmpl-1 gpt-4o-mini
	// "hello hello hello "
	// true 8 3
}

// Script a 503, an Envoy overflow, then success, and read back what the server saw.
func ExampleServer_Enqueue() {
	srv := llmtest.NewServer()
	defer srv.Close()
	srv.Enqueue(llmtest.Status(503), llmtest.EnvoyOverflow())

	cfg := openai.DefaultConfig("sk-test")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = srv.Client()
	client := openai.NewClientWithConfig(cfg)
	req := openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: "hi"}

	for range 3 {
		_, err := client.CreateEmbeddings(context.Background(), req)
		var apiErr *openai.APIError
		var reqErr *openai.RequestError
		switch {
		case errors.As(err, &apiErr):
			fmt.Println("API error:", apiErr.HTTPStatusCode, apiErr.Message)
		case errors.As(err, &reqErr):
			fmt.Println("non-JSON error:", reqErr.HTTPStatusCode, string(reqErr.Body))
		case err == nil:
			fmt.Println("ok")
		}
	}
	for _, r := range srv.Requests() {
		fmt.Println(r.Seq, r.Method, r.Path, r.Fault.Kind)
	}
	// Output:
	// API error: 503 The server is overloaded or not ready yet.
	// non-JSON error: 503 upstream connect error or disconnect/reset before headers. reset reason: overflow
	// ok
	// 1 POST /v1/embeddings status
	// 2 POST /v1/embeddings envoy-overflow
	// 3 POST /v1/embeddings none
}

// A stream that stalls before its first content chunk, until the client gives up.
func ExampleStallBeforeFirstChunk() {
	srv := llmtest.NewServer()
	defer srv.Close()
	srv.Enqueue(llmtest.StallBeforeFirstChunk(0))

	cfg := openai.DefaultConfig("sk-test")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = srv.Client()
	client := openai.NewClientWithConfig(cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	stream, err := client.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
		Model:    openai.GPT4oMini,
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "hi"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stream.Close()
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			fmt.Println("finished")
			return
		}
		if err != nil {
			fmt.Println("gave up:", errors.Is(err, context.DeadlineExceeded))
			return
		}
		fmt.Printf("role %q, content %q\n", chunk.Choices[0].Delta.Role, chunk.Choices[0].Delta.Content)
	}
	// Output:
	// role "assistant", content ""
	// gave up: true
}

// Rules strike by route, by count and by seeded chance; SetPhase switches them at run time.
func ExampleServer_SetPhase() {
	srv := llmtest.NewServer(llmtest.WithRandomSource(1))
	defer srv.Close()
	srv.SetPhase(llmtest.Phase{Name: "brownout", Rules: []llmtest.Rule{
		{Path: llmtest.PathChatCompletions, Fault: llmtest.Status(429).WithRetryAfter(2*time.Second, llmtest.RetryAfterSeconds), Count: 1},
		{Fault: llmtest.Envoy(15*time.Millisecond, 2)},
	}})

	for range 2 {
		resp, err := srv.Client().Post(srv.URL+llmtest.PathChatCompletions, "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Printf("%d retry-after=%q attempts=%q\n", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Envoy-Attempt-Count"))
	}
	srv.SetPhase(llmtest.Phase{Name: "healthy"})
	fmt.Println(srv.Requests()[1].Phase)
	// Output:
	// 429 retry-after="2" attempts=""
	// 200 retry-after="" attempts="2"
	// brownout
}

// The Responses API, streamed and read with the official openai-go SDK: the events that
// carry no output, one delta per chunk, then the terminal response.completed with usage.
func Example_responses() {
	srv := llmtest.NewServer(llmtest.WithChunks(2, "Hi "))
	defer srv.Close()
	client := oai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey("sk-test"), option.WithHTTPClient(srv.Client()))

	stream := client.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
		Model: "gpt-4o-mini",
		Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("Say hi")},
	})
	defer stream.Close()
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "response.output_text.delta":
			fmt.Printf("%d %s %q\n", ev.SequenceNumber, ev.Type, ev.Delta)
		case "response.completed":
			u := ev.Response.Usage
			fmt.Println(ev.SequenceNumber, ev.Type, ev.Response.ID, u.InputTokens, u.OutputTokens)
		default:
			fmt.Println(ev.SequenceNumber, ev.Type)
		}
	}
	if err := stream.Err(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// 0 response.created
	// 1 response.in_progress
	// 2 response.output_item.added
	// 3 response.content_part.added
	// 4 response.output_text.delta "Hi "
	// 5 response.output_text.delta "Hi "
	// 6 response.output_text.done
	// 7 response.content_part.done
	// 8 response.output_item.done
	// 9 response.completed resp_1 8 2
}

// A request whose tool_choice forces a function is answered with a call of it, with
// arguments built from the function's parameters schema.
func Example_toolCall() {
	srv := llmtest.NewServer()
	defer srv.Close()
	cfg := openai.DefaultConfig("sk-test")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = srv.Client()
	client := openai.NewClientWithConfig(cfg)

	resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model:    openai.GPT4oMini,
		Messages: []openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleUser, Content: "Weather in Paris?"}},
		Tools: []openai.Tool{{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
			Name:       "get_weather",
			Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["celsius","fahrenheit"]}}}`),
		}}},
		ToolChoice: "required",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	call := resp.Choices[0].Message.ToolCalls[0]
	fmt.Println(resp.Choices[0].FinishReason, call.ID, call.Function.Name, call.Function.Arguments)
	// Output:
	// tool_calls call_1 get_weather {"city":"llmtest","unit":"celsius"}
}

// CountingOutput places a fault at the same point of every stream: here, just after the
// first output, which is the 2nd event of a chat stream and the 5th of a Responses stream.
func ExampleFault_CountingOutput() {
	srv := llmtest.NewServer()
	defer srv.Close()
	for _, req := range []struct{ path, body string }{
		{llmtest.PathChatCompletions, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{llmtest.PathResponses, `{"model":"m","stream":true,"input":"hi"}`},
	} {
		srv.Enqueue(llmtest.ResetAfter(1).CountingOutput())
		resp, err := srv.Client().Post(srv.URL+req.path, "application/json", strings.NewReader(req.body))
		if err != nil {
			fmt.Println(err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		events := strings.Count(string(body), "data: ")
		fmt.Println(req.path, resp.StatusCode, events, "events, then", err)
	}
	// Output:
	// /v1/chat/completions 200 2 events, then unexpected EOF
	// /v1/responses 200 5 events, then unexpected EOF
}

// A server with OpenAI's rate limits: the second request in a minute is refused.
func ExampleWithRateLimit() {
	srv := llmtest.NewServer(llmtest.WithRateLimit(llmtest.RateLimit{RequestsPerMinute: 1, TokensPerMinute: 1000}))
	defer srv.Close()
	for range 2 {
		resp, err := srv.Client().Post(srv.URL+llmtest.PathChatCompletions, "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			fmt.Println(err)
			return
		}
		var body struct {
			Error *struct{ Type, Code string }
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		h := resp.Header
		fmt.Println(resp.StatusCode, "requests left:", h.Get("X-Ratelimit-Remaining-Requests"), "tokens left:", h.Get("X-Ratelimit-Remaining-Tokens"))
		if body.Error != nil {
			fmt.Println(body.Error.Type, body.Error.Code)
		}
	}
	fmt.Printf("%+v\n", srv.RateLimitCounts())
	// Output:
	// 200 requests left: 0 tokens left: 988
	// 429 requests left: 0 tokens left: 988
	// requests rate_limit_exceeded
	// {Admitted:1 LimitedRequests:1 LimitedTokens:0}
}

// Canned answers without a socket: a Base transport for benchmarks of a client's own
// work per call.
func ExampleCanned() {
	hc := &http.Client{Transport: llmtest.CannedChat()}
	resp, err := hc.Post("http://api.invalid/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%q, %d tokens\n", out.Choices[0].Message.Content, out.Usage.TotalTokens)
	// Output: "tok tok tok tok tok tok tok tok ", 17 tokens
}
