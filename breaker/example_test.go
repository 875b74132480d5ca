package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

// A flaky call succeeds on its second attempt.
func Example() {
	p, err := breaker.New(breaker.Config{
		Name:          "inference",
		PerTryTimeout: time.Second,
		Backoff:       breaker.Backoff{Initial: time.Millisecond},
	})
	if err != nil {
		panic(err)
	}
	n := 0
	reply, err := breaker.Do(context.Background(), p, func(ctx context.Context) (string, error) {
		n++
		if n == 1 {
			return "", errors.New("connection reset")
		}
		return "hello", nil
	})
	fmt.Println(reply, err, n, "attempts")
	// Output: hello <nil> 2 attempts
}

// When every attempt fails, the error wraps the last one and says why Do
// stopped.
func ExampleDo_error() {
	p, _ := breaker.New(breaker.Config{MaxAttempts: 3, Backoff: breaker.Backoff{Initial: time.Millisecond}})
	errUpstream := errors.New("upstream: 503")
	_, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
		return 0, errUpstream
	})
	fmt.Println(err)
	fmt.Println(errors.Is(err, errUpstream), errors.Is(err, breaker.ErrRetriesExhausted))
	var be *breaker.Error
	if errors.As(err, &be) {
		fmt.Println(be.Attempts, be.Verdict.Class)
	}
	// Output:
	// breaker: 3 attempts: upstream: 503
	// true true
	// 3 unknown
}

// The breaker opens once the failure rate reaches the threshold, and then
// rejects calls without running them.
func ExamplePolicy_State() {
	p, _ := breaker.New(breaker.Config{
		MinimumCalls: 3,
		MaxAttempts:  1,
		Hooks: breaker.Hooks{OnStateChange: func(name string, from, to breaker.State) {
			fmt.Printf("%s: %v -> %v\n", name, from, to)
		}},
		Name: "llm",
	})
	fail := func(ctx context.Context) (int, error) { return 0, errors.New("overloaded") }
	for range 3 {
		breaker.Do(context.Background(), p, fail)
	}
	fmt.Println(p.State())
	_, err := breaker.Do(context.Background(), p, fail)
	fmt.Println(errors.Is(err, breaker.ErrOpen), err)
	// Output:
	// llm: closed -> open
	// open
	// true breaker: circuit open
}

// A classifier reports the upstream's wait hint and mesh signals; here the
// upstream asks for longer than MaxRetryAfter allows, so Do does not retry and
// the error carries the hint.
func ExampleClassifier() {
	errLimited := errors.New("429 too many requests")
	p, _ := breaker.New(breaker.Config{
		MaxRetryAfter: 10 * time.Second,
		Classifier: func(err error) breaker.Verdict {
			if errors.Is(err, errLimited) {
				return breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true,
					Class: breaker.ClassRateLimited, RetryAfter: time.Minute}
			}
			return breaker.DefaultClassifier(err)
		},
	})
	_, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
		return 0, errLimited
	})
	var be *breaker.Error
	errors.As(err, &be)
	fmt.Println(be.Reason == breaker.ErrRetryAfterTooLong, be.RetryAfter)
	fmt.Println(err)
	// Output:
	// true 1m0s
	// breaker: 1 attempt (retry-after exceeds MaxRetryAfter: 1m0s): 429 too many requests
}

// A stream is bounded per try by its first-token timeout, with no overall
// timeout that would cut a long stream.
func ExampleWithOverrides() {
	p, _ := breaker.New(breaker.Config{Timeout: 30 * time.Second})
	ctx := breaker.WithOverrides(context.Background(), breaker.Overrides{
		PerTryTimeout: 5 * time.Second,
		Timeout:       breaker.NoTimeout,
	})
	breaker.Do(ctx, p, func(ctx context.Context) (int, error) {
		d, _ := ctx.Deadline()
		fmt.Println(time.Until(d).Round(time.Second))
		return 0, nil
	})
	// Output: 5s
}

func ExampleDefaultClassifier() {
	fmt.Printf("%+v\n", breaker.DefaultClassifier(context.Canceled))
	fmt.Printf("%+v\n", breaker.DefaultClassifier(context.DeadlineExceeded))
	fmt.Printf("%+v\n", breaker.DefaultClassifier(errors.New("EOF")))
	// Output:
	// {Outcome:excluded Retryable:false Class:canceled RetryAfter:0s Signals:{MeshRetried:false NoHealthyUpstream:false Overloaded:false}}
	// {Outcome:failure Retryable:true Class:timeout RetryAfter:0s Signals:{MeshRetried:false NoHealthyUpstream:false Overloaded:false}}
	// {Outcome:failure Retryable:true Class:unknown RetryAfter:0s Signals:{MeshRetried:false NoHealthyUpstream:false Overloaded:false}}
}

func ExampleNew() {
	_, err := breaker.New(breaker.Config{FailureRate: 150})
	fmt.Println(err)
	_, err = breaker.New(breaker.Config{HalfOpenCalls: -1})
	fmt.Println(err)
	// Output:
	// breaker: FailureRate 150 out of range (0,100]
	// breaker: HalfOpenCalls -1 out of range [1,1048576] (0 means 3)
}

// rateLimited is an upstream error that knows its own verdict, as the HTTP and
// gRPC errors of this module do.
type rateLimited struct{}

func (rateLimited) Error() string { return "429 too many requests" }
func (rateLimited) BreakerVerdict() breaker.Verdict {
	return breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassRateLimited}
}

// ClassOf names the kind of any error, for a metric label or a fallback
// decision, however deeply it is wrapped.
func ExampleClassOf() {
	p, _ := breaker.New(breaker.Config{MaxAttempts: 1})
	_, err := breaker.Do(context.Background(), p, func(ctx context.Context) (int, error) {
		return 0, rateLimited{}
	})
	fmt.Println(breaker.ClassOf(err))
	fmt.Println(breaker.ClassOf(fmt.Errorf("read reply: %w", context.DeadlineExceeded)))
	fmt.Println(breaker.ClassOf(context.Canceled))
	fmt.Println(breaker.ClassOf(errors.New("EOF")))
	fmt.Printf("%q\n", breaker.ClassOf(nil))
	// Output:
	// rate_limited
	// timeout
	// canceled
	// unknown
	// ""
}
