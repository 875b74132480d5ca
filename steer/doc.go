// Package steer decides which of several named backends takes a call: two
// model versions during a canary, two providers during a migration (OpenAI
// and Azure OpenAI, an external API and a self-hosted vLLM), the replicas
// that hold conversations. It also says how long to wait for a first chunk
// before hedging a call on another backend.
//
// Istio's VirtualService splits traffic and matches headers, and its
// DestinationRule hashes sessions, for services inside the mesh. Backends
// whose URLs, credentials and model names differ are beyond it, and so is
// hedging a slow first token. steer does these in the client. It knows
// nothing of HTTP, URLs or credentials: it chooses a name, and the caller
// (llmclient) maps the name to a request.
//
// # Choosing a backend
//
// A [Router] is built once from a [Config] with [New]. For each call,
// [Router.Pick] tries, in order:
//
//   - Header rules ([Rule]): the first whose header matches, exactly or by
//     prefix, sends the call to its backend, for example internal testers
//     (x-canary-user: true) to the new version.
//   - Session affinity: a call that carries Config.AffinityHeader (default
//     x-session-id) goes to its session's backend on a consistent-hash ring,
//     with the ring points of each backend in proportion to its weight. The
//     loads are bounded (Mirrokni, Thorup and Zadimoghaddam, "Consistent
//     Hashing with Bounded Loads"): a backend that has more than its share of
//     the calls in flight, by Config.LoadFactor, passes new calls on to the
//     next backend on the ring, and a session comes back when its backend has
//     room again.
//   - The balance: a smooth weighted round-robin, as nginx does, which at
//     90/10 sends exactly one call in ten to the minor backend
//     ([Weighted]); or two random choices, the one with fewer calls in flight
//     relative to its weight winning ([LeastLoaded]).
//
// Every step skips the backends the [Request] excludes (a hedge or a retry
// goes elsewhere) and those its Healthy function calls unhealthy (llmclient:
// the breaker is open, or the quota is spent), unless fewer than
// Config.MinHealthyPercent of the backends are healthy. A step that finds no
// backend passes the call to the next; when none is left, Pick fails with
// [ErrNoBackend].
//
// Pick returns a done function: the router counts calls in flight per
// backend, for bounded loads and the least-loaded choice, from Pick until
// done runs.
//
// # Shifting traffic
//
// [Router.SetWeights] changes the weights while calls run, as a migration
// goes 90/10, 70/30, 20/80, 0/100. It swaps an immutable snapshot of the
// weights and the ring, so the next Pick uses the new weights and no Pick
// waits or fails. A backend with weight 0 takes no share of the split or the
// sessions but still takes the calls a rule sends it.
//
// # Hedging
//
// A [Hedger] records each backend's recent times to first chunk
// ([Hedger.Observe]) and answers, for a new call, how long to wait before
// hedging it ([Hedger.Delay]): by default the p95 of the last 256 samples,
// clamped to [100ms, 10s].
//
// Everything in the package is safe for concurrent use and starts no
// goroutines. A Pick costs a few hundred nanoseconds and allocates nothing.
package steer
