// Package budgets measures the project's performance budgets side by side, in one run, so
// that the machine's load hits both sides of each ratio alike: the compared clients take
// turns in small blocks, and each ratio is the median of several rounds.
//
//	go test ./budgets -run TestBudgets -budgets -v -timeout 30m
//	go test ./budgets -run 'TestBudgets/(unary|stream)' -budgets -v   # some budgets only
//
// (the package goes before -budgets: go test hands every flag it does not know, and what
// follows it, to the test binary). -budgets.rounds, -budgets.streams, -budgets.hop.rounds
// and -budgets.hop size the runs; -budgets.heapprofile writes heap profiles of the open
// streams.
//
// The budgets, each a ratio against a peer or against the client infermesh wraps:
//
//  1. breaker.Do with the full policy costs at most 0.75x the CPU of failsafe-go's retry,
//     breaker and timeouts composed the same way (the cases of package overhead).
//  2. llmclient adds at most 0.75x go-openai's own client-side CPU per unary chat call.
//  3. llmclient adds at most 0.5x go-openai's own CPU per 11-event stream (8 content
//     chunks, a finish chunk, a usage chunk, [DONE]; the caller asks for the usage chunk
//     in both cases, so the upstream does the same work).
//  4. Through one HAProxy hop at concurrency 1 over HTTP/1.1, what llmclient adds to the
//     transport preset's p50 is at most 0.25 of what the hop adds to it over the direct
//     path (meshbench's upstream, proxy configuration and load generator; many short runs
//     of each client and path in turn, their latencies pooled).
//  5. llmclient holds no more heap per open stream than bare net/http, go-openai's stream
//     reader in both: streams read to their first content chunk and held open by a server
//     in another process, the heap measured after a collection.
//  6. The quota: (a) a shared admission costs one Redis round trip on the call's path
//     (true-ups are batched by the quota's worker and counted apart), against a real
//     redis-server, with the latency it adds at p50 and p99; (b) a local admission costs at
//     most 0.1x of llmclient's own CPU per call.
//
// Budgets 1 to 3 and 6 are socket-free: go-openai calls over a Base transport that answers
// at once with a canned body, so the figures are the clients' own work. CPU is the
// process's (getrusage: user and system time of every thread, garbage collection
// included), per call. Budget 4 needs haproxy and 6a redis-server (Debian packages of the
// same names); without them those parts are skipped, except under CI=true.
//
// Without -budgets only TestSmoke runs: every measurement on a tiny plan, checking the
// invariants that hold on any machine (one Redis round trip per shared admission, at most
// one true-up per call), so that go test ./... stays fast. BenchmarkChat and
// BenchmarkStream are the socket-free calls for go test -bench.
package budgets
