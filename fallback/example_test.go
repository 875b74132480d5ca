package fallback_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
)

// A chain tries its targets in order; the answer names the one that served it.
func ExampleChain() {
	busy := fallback.Func("rules", func(ctx context.Context, r *fallback.Request) (fallback.Reply, error) {
		msgs, err := r.Messages()
		if err != nil {
			return fallback.Reply{}, err
		}
		if strings.Contains(msgs[len(msgs)-1].Content, "refund") {
			return fallback.Reply{Content: "Refunds are handled at /refunds."}, nil
		}
		return fallback.Reply{}, fallback.ErrUnsupported
	})
	chain, err := fallback.New(fallback.Config{Targets: []fallback.Target{
		busy,
		fallback.Static("static", "The assistant is busy; please try again shortly."),
	}})
	if err != nil {
		panic(err)
	}
	for _, q := range []string{"How do I get a refund?", "Tell me a joke"} {
		body := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + q + `"}]}`
		req := &fallback.Request{Body: []byte(body), Operation: "/chat/completions", Model: "gpt-4o"}
		resp, err := chain.Serve(context.Background(), req, breaker.Verdict{})
		if err != nil {
			panic(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.Header.Get(fallback.HeaderFallback), strings.Contains(string(b), "chat.completion"))
	}
	// Output:
	// rules true
	// static true
}

// A last-good cache answers a repeated question while the primary is down, marked as
// degraded.
func ExampleCache() {
	cache, err := fallback.NewCache(fallback.CacheConfig{})
	if err != nil {
		panic(err)
	}
	req := &fallback.Request{Operation: "/chat/completions", Model: "gpt-4o",
		Body: []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"capital of France?"}]}`)}
	cache.Store(req, []byte(`{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Paris"},"finish_reason":"stop"}]}`))

	resp, err := cache.Serve(context.Background(), req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode == http.StatusOK, resp.Header.Get(fallback.HeaderDegraded))
	// Output: true cache
}
