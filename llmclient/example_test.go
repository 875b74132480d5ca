package llmclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	openaigo "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/breaker"

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
// Config.Route changes one field of a default route and keeps the others.
func ExampleStreamPolicy() {
	cfg := llmclient.Config{}
	cfg.Route("chat").Stream.FirstTokenTimeout = 30 * time.Second // reasoning models think first
	cfg.Route("chat").Stream.IdleTimeout = 15 * time.Second       // while the caller waits
	_, err := llmclient.NewHTTPClient(cfg)
	fmt.Println(err, cfg.Route("chat").Policy.Timeout) // the chat route's other limits stay
	// Output: <nil> 5m0s
}

// With go-openai, a failure that came from an upstream answer is go-openai's own
// *openai.APIError: here Envoy's plain-text "no healthy upstream", which go-openai
// could not have decoded by itself. What infermesh decides on its own stays a Go
// error: here the breaker, open after that failure, with no fallback.
func ExampleNewHTTPClient_goOpenAIErrors() {
	srv := llmtest.NewServer()
	defer srv.Close()
	srv.SetRules(llmtest.Rule{Fault: llmtest.EnvoyNoHealthyUpstream()})

	cfg := llmclient.Config{}
	cfg.Route("chat").Policy.MinimumCalls = 1 // open after one failure, to show it
	hc, err := llmclient.NewHTTPClient(cfg)
	if err != nil {
		panic(err)
	}
	defer hc.CloseIdleConnections()
	oc := openai.DefaultConfig("sk-example")
	oc.BaseURL = srv.URL + "/v1"
	oc.HTTPClient = hc
	client := openai.NewClientWithConfig(oc)
	req := openai.ChatCompletionRequest{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}}}

	_, err = client.CreateChatCompletion(context.Background(), req)
	var apiErr *openai.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.HTTPStatusCode, apiErr.Message)
	}
	_, err = client.CreateChatCompletion(context.Background(), req)
	fmt.Println(errors.Is(err, breaker.ErrOpen))
	// Output:
	// 503 no healthy upstream
	// true
}

// With openai-go, the Responses API and chat go through the same client, and an
// upstream's failure is openai-go's own *openai.Error; the response's headers (read with
// option.WithResponseInto) carry infermesh's facts. The SDK's own retries need no
// change: infermesh tells it not to retry what it already judged.
func ExampleNewHTTPClient_openaiGo() {
	srv := llmtest.NewServer(llmtest.WithChunks(2, "hi "))
	defer srv.Close()
	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
	if err != nil {
		panic(err)
	}
	defer hc.CloseIdleConnections()
	client := openaigo.NewClient(option.WithHTTPClient(hc), option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey("sk-example"))

	resp, err := client.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "gpt-4o-mini", Input: responses.ResponseNewParamsInputUnion{OfString: openaigo.String("hello")}})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", resp.OutputText())

	// An error object inside a 200 (the business error a mesh cannot see), on every
	// attempt.
	srv.SetRules(llmtest.Rule{Fault: llmtest.ErrorEvent(0)})
	var raw *http.Response
	_, err = client.Chat.Completions.New(context.Background(), openaigo.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Messages: []openaigo.ChatCompletionMessageParamUnion{openaigo.UserMessage("hello")}},
		option.WithResponseInto(&raw))
	var apiErr *openaigo.Error
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode, apiErr.Message, raw.Header.Get(llmclient.HeaderErrorClass), raw.Header.Get(llmclient.HeaderAttempts))
	}
	fmt.Println(len(srv.Requests()), "upstream requests")
	// Output:
	// "hi hi "
	// 503 Overloaded overloaded 2
	// 3 upstream requests
}
