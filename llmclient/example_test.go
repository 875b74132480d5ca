package llmclient_test

import (
	"context"
	"fmt"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// A go-openai client gets infermesh through its HTTPClient; nothing else changes. The
// upstream's first answer is a 503, which the client never sees: it is retried.
func ExampleNewHTTPClient() {
	srv := llmtest.NewServer(llmtest.WithChunks(3, "hi "))
	defer srv.Close()
	srv.Enqueue(llmtest.Status(503))

	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
	if err != nil {
		panic(err)
	}
	defer hc.CloseIdleConnections()
	cfg := openai.DefaultConfig("sk-example")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = hc
	client := openai.NewClientWithConfig(cfg)

	resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hello"}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q after %d requests\n", resp.Choices[0].Message.Content, len(srv.Requests()))
	// Output: "hi hi hi " after 2 requests
}

// When the mesh reports that no upstream is healthy, the call goes at once to a local
// model, and the response says so.
func ExampleConfig_fallback() {
	primary := llmtest.NewServer()
	defer primary.Close()
	primary.SetRules(llmtest.Rule{Fault: llmtest.EnvoyNoHealthyUpstream()})
	local := llmtest.NewServer(llmtest.WithChunks(2, "local "))
	defer local.Close()

	ollama, err := fallback.NewEndpoint(fallback.EndpointConfig{Name: "ollama", BaseURL: local.URL + "/v1", Model: "llama3.2"})
	if err != nil {
		panic(err)
	}
	hc, err := llmclient.NewHTTPClient(llmclient.Config{
		Fallback: fallback.Config{Targets: []fallback.Target{ollama}},
	})
	if err != nil {
		panic(err)
	}
	defer hc.CloseIdleConnections()
	defer ollama.CloseIdleConnections()
	cfg := openai.DefaultConfig("sk-example")
	cfg.BaseURL = primary.URL + "/v1"
	cfg.HTTPClient = hc
	client := openai.NewClientWithConfig(cfg)

	resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hello"}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Header().Get(fallback.HeaderFallback), resp.Model, len(primary.Requests()))
	// Output: ollama llama3.2 1
}

// Streams get a first-token timeout and an idle timeout instead of a total timeout.
func ExampleStreamPolicy() {
	routes := llmclient.DefaultRoutes()
	for i := range routes {
		if routes[i].Name == "chat" {
			routes[i].Stream = llmclient.StreamPolicy{
				FirstTokenTimeout: 30 * time.Second, // reasoning models think before the first token
				IdleTimeout:       15 * time.Second, // between two chunks
			}
		}
	}
	_, err := llmclient.NewHTTPClient(llmclient.Config{Routes: routes})
	fmt.Println(err)
	// Output: <nil>
}
