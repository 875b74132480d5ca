// Package chaos holds infermesh's chaos suite: its tests run llmclient (with and
// without fallback) and grpcinfer against every fault llmtest can inject, in bursts of
// concurrent calls over loopback, and assert that nothing is lost, nothing leaks,
// retries stay within the budget, the breaker opens and recovers, and streams are
// never retried after their first content chunk. The package has no API.
package chaos
