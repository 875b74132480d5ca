package overhead

import (
	"context"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/sony/gobreaker/v2"

	"github.com/infermesh/infermesh/breaker"
)

// The full policy's limits, the same for infermesh and failsafe-go.
const (
	OverallTimeout = 30 * time.Second
	PerTryTimeout  = 10 * time.Second
	MaxAttempts    = 2
	BackoffInitial = 2 * time.Second
	BackoffMax     = 30 * time.Second
)

// Noop is the call every in-process case runs: it returns 1 and no error.
func Noop(context.Context) (int, error) { return 1, nil }

// Call runs fn once through a policy.
type Call func(ctx context.Context, fn func(context.Context) (int, error)) (int, error)

// PolicyCase is one in-process case: New builds the policy with the given per-try and
// overall timeouts (the limits above otherwise) and returns its Call.
type PolicyCase struct {
	Name string
	New  func(perTry, overall time.Duration) (Call, error)
}

// PolicyCases returns the in-process cases, in the order BenchmarkPolicy runs them: bare,
// gobreaker, infermesh, failsafe-go, failsafe-go-1timeout.
func PolicyCases() []PolicyCase {
	return []PolicyCase{
		{"bare", func(time.Duration, time.Duration) (Call, error) {
			return func(ctx context.Context, fn func(context.Context) (int, error)) (int, error) { return fn(ctx) }, nil
		}},
		{"gobreaker", func(time.Duration, time.Duration) (Call, error) {
			cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "bench"})
			return func(ctx context.Context, fn func(context.Context) (int, error)) (int, error) {
				return cb.Execute(func() (int, error) { return fn(ctx) })
			}, nil
		}},
		{"infermesh", infermeshPolicy},
		{"failsafe-go", failsafeCase(false)},
		{"failsafe-go-1timeout", failsafeCase(true)},
	}
}

// Policy returns the case named name, or false.
func Policy(name string) (PolicyCase, bool) {
	for _, pc := range PolicyCases() {
		if pc.Name == name {
			return pc, true
		}
	}
	return PolicyCase{}, false
}

func infermeshPolicy(perTry, overall time.Duration) (Call, error) {
	p, err := breaker.New(breaker.Config{
		Name:          "bench",
		Timeout:       overall,
		PerTryTimeout: perTry,
		MaxAttempts:   MaxAttempts,
		Backoff:       breaker.Backoff{Initial: BackoffInitial, Max: BackoffMax},
	})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, fn func(context.Context) (int, error)) (int, error) {
		return breaker.Do(ctx, p, fn)
	}, nil
}

// failsafePolicies mirrors infermesh's layers: Timeout(Retry(CircuitBreaker(PerTryTimeout(fn)))),
// with the same attempts and backoff, a 50% failure threshold over the last 20 calls, 30 s
// open and 3 half-open calls, as breaker.Config's defaults.
func failsafePolicies[R any](perTry, overall time.Duration, oneTimeout bool) []failsafe.Policy[R] {
	rp := retrypolicy.NewBuilder[R]().WithMaxAttempts(MaxAttempts).WithBackoff(BackoffInitial, BackoffMax).WithJitterFactor(0.5).Build()
	cb := circuitbreaker.NewBuilder[R]().WithFailureThresholdRatio(10, 20).WithDelay(30 * time.Second).WithSuccessThreshold(3).Build()
	if oneTimeout {
		return []failsafe.Policy[R]{rp, cb, timeout.New[R](perTry)}
	}
	return []failsafe.Policy[R]{timeout.New[R](overall), rp, cb, timeout.New[R](perTry)}
}

// failsafeCase builds the failsafe-go executor once and calls it without WithContext, its
// cheapest use.
func failsafeCase(oneTimeout bool) func(perTry, overall time.Duration) (Call, error) {
	return func(perTry, overall time.Duration) (Call, error) {
		ex := failsafe.With(failsafePolicies[int](perTry, overall, oneTimeout)...)
		return func(_ context.Context, fn func(context.Context) (int, error)) (int, error) {
			return ex.GetWithExecution(func(e failsafe.Execution[int]) (int, error) { return fn(e.Context()) })
		}, nil
	}
}
