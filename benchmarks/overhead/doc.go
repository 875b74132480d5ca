// Package overhead measures what a resilience layer costs per call, against its peers, with
// go test -bench. The in-process cases live in policies.go ([PolicyCases]), so that the
// budgets package can run them side by side too; the HTTP cases live in overhead_test.go.
// Every case runs in one go test invocation (go test -bench . -run '^$' ./...).
//
// In-process, every case runs the same no-op function:
//
//	BenchmarkPolicy/bare                 the call alone
//	BenchmarkPolicy/gobreaker            sony/gobreaker/v2 Execute alone
//	BenchmarkPolicy/infermesh            breaker.Do with the full policy: overall Timeout,
//	                                     retries with budget, circuit breaker, PerTryTimeout
//	BenchmarkPolicy/failsafe-go          failsafe-go composed the same way: timeout, retry
//	                                     policy, circuit breaker, per-try timeout
//	BenchmarkPolicy/failsafe-go-1timeout failsafe-go retry, circuit breaker, one timeout
//	BenchmarkTimeLimiterStdlib           a context.WithTimeout plus a goroutine handoff: a
//	                                     time limiter that returns at its deadline even if
//	                                     the call ignores its context, built the usual way
//
// Over HTTP, every case makes the same small POST to a loopback server and reads the reply:
//
//	BenchmarkHTTP/bare-tuned     net/http with infermesh's transport preset (transport.New)
//	BenchmarkHTTP/infermesh      llmclient.NewHTTPClient, the full stack
//	BenchmarkHTTP/failsafehttp   failsafe-go's RoundTripper (timeout, retry, breaker, per-try
//	                             timeout) over the same transport preset
//	BenchmarkHTTP/retryablehttp  hashicorp/go-retryablehttp over the same transport preset
//
// The failsafe-go executor is built once and called without WithContext, the cheapest way to
// use it, so the comparison is conservative. Note the semantic difference it hides: when a
// call ignores its context, failsafe-go's timeout waits for it to return, while infermesh's
// time limiter returns at the deadline (which costs it a goroutine handoff per attempt).
package overhead
