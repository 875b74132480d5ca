package llmtest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/infermesh/infermesh/llmclient/llmtest"
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
	srv := llmtest.NewServer(llmtest.WithSeed(1))
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
