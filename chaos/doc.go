// Package chaos holds infermesh's chaos suite: its tests run llmclient (chat and the
// Responses API, streamed and not, through go-openai and openai-go, with and without a
// fallback) and grpcinfer against every fault llmtest can inject, in bursts of concurrent
// calls over loopback, and assert that nothing is lost (every call ends as a success, a
// marked fallback or a typed error, as package internal/sdkerr defines it), nothing
// leaks, retries stay within the budget and are never multiplied by the caller's SDK, the
// breaker opens and recovers, and streams are never retried after their first output.
// The package has no API.
package chaos
