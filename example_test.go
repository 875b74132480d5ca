package infermesh_test

import (
	"context"
	"fmt"
	"net/http"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// The one line a go-openai program changes: its HTTPClient. Here the upstream's mesh
// sidecar sheds the first request (Envoy's 503 overflow); the client backs off and
// retries, and the caller sees only the answer.
func Example() {
	upstream := llmtest.NewServer(llmtest.WithChunks(2, "fine "))
	defer upstream.Close()
	upstream.Enqueue(llmtest.EnvoyOverflow())

	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
	if err != nil {
		panic(err)
	}
	defer hc.CloseIdleConnections()
	cfg := openai.DefaultConfig("sk-example")
	cfg.BaseURL = upstream.URL + "/v1"
	cfg.HTTPClient = hc // the one line
	client := openai.NewClientWithConfig(cfg)

	resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "How are you?"}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q, %d requests upstream\n", resp.Choices[0].Message.Content, len(upstream.Requests()))
	// Output: "fine fine ", 2 requests upstream
}

// When the primary is out (the mesh has no healthy upstream), a static reply keeps the
// product answering, and the response says it came from the fallback.
func Example_fallback() {
	upstream := llmtest.NewServer()
	defer upstream.Close()
	upstream.SetRules(llmtest.Rule{Fault: llmtest.EnvoyNoHealthyUpstream()})

	tr, err := llmclient.NewTransport(llmclient.Config{
		Fallback: fallback.Config{Targets: []fallback.Target{fallback.Static("busy", "Please try again in a minute.")}},
	})
	if err != nil {
		panic(err)
	}
	defer tr.CloseIdleConnections()
	cfg := openai.DefaultConfig("sk-example")
	cfg.BaseURL = upstream.URL + "/v1"
	cfg.HTTPClient = &http.Client{Transport: tr}
	client := openai.NewClientWithConfig(cfg)

	resp, err := client.CreateChatCompletion(context.Background(), openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "Hi"}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Header().Get(fallback.HeaderFallback)+":", resp.Choices[0].Message.Content)
	// Output: busy: Please try again in a minute.
}
