package quota_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/infermesh/infermesh/quota"
)

// A call reserves its request and estimated tokens before it is sent and settles them with
// the usage the provider reported. A call that cannot be admitted within MaxWait is refused.
func Example() {
	lim, err := quota.New(quota.Config{
		Limits:  map[string]quota.Limits{"openai": {RequestsPerMinute: 2, TokensPerMinute: 10_000}},
		MaxWait: quota.NoWait, // refuse at once instead of waiting
	})
	if err != nil {
		panic(err)
	}
	defer lim.Close()

	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}],"max_tokens":100}`)
	ctx := context.Background()
	for range 3 {
		r, err := lim.Reserve(ctx, "openai", quota.EstimateTokens(body, 1000))
		var qe *quota.Error
		if errors.As(err, &qe) {
			fmt.Printf("refused: %v, about %v to wait\n", qe.Kind, qe.Wait.Round(time.Second))
			continue
		}
		fmt.Println("admitted", r.Tokens(), "tokens")
		// ... send the call, then:
		r.Settle(42) // the usage in the answer
	}
	// Output:
	// admitted 120 tokens
	// admitted 120 tokens
	// refused: requests per minute, about 30s to wait
}

// Observe learns from every response; a 429 with Retry-After stops every caller of the key
// until then.
func ExampleLimiter_Observe() {
	lim, err := quota.New(quota.Config{MaxWait: time.Second})
	if err != nil {
		panic(err)
	}
	defer lim.Close()

	lim.Observe("azure-east", http.Header{"Retry-After": {"20"}}, http.StatusTooManyRequests)
	fmt.Println("available:", lim.Available("azure-east"))
	_, err = lim.Reserve(context.Background(), "azure-east", 100)
	fmt.Println(errors.Is(err, quota.ErrQuota))
	// Output:
	// available: false
	// true
}

func ExampleEstimateTokens() {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Summarise this."}],"max_completion_tokens":500}`)
	fmt.Println(quota.EstimateTokens(body, 4096)) // len(body)/4 + 500
	fmt.Println(quota.EstimateTokens([]byte(`{"input":"hi"}`), 4096))
	// Output:
	// 525
	// 4099
}
