// Package quota admits calls to an LLM provider within its requests-per-minute (RPM),
// tokens-per-minute (TPM) and concurrency limits, per key (llmclient uses the backend name),
// in one process by default and across the replicas of a service through Redis.
//
// Providers limit an organisation or a deployment, not a pod: ten replicas that each retry
// their own 429s stay over the limit together. A [Limiter] makes each call reserve its share
// before it is sent, learns what the provider says is left, and, given a Redis client, keeps
// one count for all replicas, so they slow down together instead of being refused.
//
// # Reservations and true-up
//
// Before a call is sent, [Limiter.Reserve] takes one request and an estimate of its tokens
// ([EstimateTokens]: the body's bytes/4 plus its max_tokens) from the key's quota, and a slot
// when the key has MaxConcurrent. If the quota is not there yet, the call waits for it, never
// longer than Config.MaxWait nor past its context's deadline; otherwise it is refused at once
// with an [*Error] that matches [ErrQuota] and says which limit ([Kind]) and how long the
// call would have had to wait. After the answer, [Reservation.Settle] trues the reservation
// up to the usage the provider reported, taking more or giving the rest back, and frees the
// slot; [Reservation.Cancel] gives everything back for a call that never reached the
// provider.
//
//	r, err := lim.Reserve(ctx, "openai", quota.EstimateTokens(body, 4096))
//	if err != nil {
//		return err // errors.Is(err, quota.ErrQuota): no quota within the wait
//	}
//	resp, err := send(ctx, body)
//	if err != nil {
//		r.Settle(-1) // the usage is unknown: the estimate stands (Cancel if it never left)
//		return err
//	}
//	lim.Observe("openai", resp.Header, resp.StatusCode)
//	r.Settle(usage.TotalTokens) // 0 for a 429
//
// Each limit is a bucket that holds the limit's count, refills at the limit per minute and
// lets a call wait for at most a full bucket: a call larger than the limit waits for a full
// bucket and leaves it in debt (at most one window's worth). [Config.Window] is the length
// of the "minute"; only tests and simulations change it.
//
// # Learned limits
//
// [Limiter.Observe] reads the x-ratelimit-* headers of every response. The limit headers
// lower the key's limits (a key without configured limits takes them as its limits); the
// remaining headers lower what the key holds, and the bucket refills from there, full again
// by the reset, as the provider's own is. When the limit is unknown, a remaining count of zero
// marks the key exhausted until the reset. A 429 with Retry-After (seconds, an HTTP date, or
// retry-after-ms) marks the key exhausted until then, for every caller in the process: they
// wait for the time if it fits their wait and are refused at once if not. [Limiter.Available]
// tells a router, without waiting, whether a key is out of quota now.
//
// # Shared mode
//
// With Config.Redis set, the limits of every key are kept in Redis and shared by every
// Limiter with the same Redis and Config.Prefix. One admission is one round trip: a Lua
// script (EVALSHA, loaded with EVAL when Redis does not know it) that reads the buckets on
// Redis's clock, decides, and takes the request and the tokens in one atomic step. True-ups,
// cancellations and what the provider said (remaining counts, exhaustion from a 429) are
// sent by a background goroutine, so that ten replicas stop together when one of them is
// told to. Keys are named
//
//	<prefix>{<key>}:requests, <prefix>{<key>}:tokens, <prefix>{<key>}:exhausted
//	<prefix>replicas
//
// (the braces keep a key's three on one Redis Cluster slot), and each expires when it no
// longer says anything: a bucket when it is full again, the exhaustion when it ends.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379", ContextTimeoutEnabled: true})
//	lim, err := quota.New(quota.Config{
//		Limits: map[string]quota.Limits{"openai": {RequestsPerMinute: 500, TokensPerMinute: 200_000}},
//		Redis:  rdb,
//	})
//	...
//	defer lim.Close()
//
// MaxConcurrent stays per process in shared mode: a shared count of calls in flight would
// keep the slots of a replica that died.
//
// # Headroom
//
// A provider counts a call when it arrives, and its buckets start their clock at the first
// call it sees. When that call took longer to reach it than later ones (a new connection, a
// busy network), the provider is stricter than the Limiter by the difference for as long as
// the key stays saturated, and a call admitted exactly on the limit's schedule gets a 429.
// So a call that has to wait for a refill waits Config.Headroom (100 ms by default) more: a
// saturated key is admitted at its full rate, shifted by the headroom, and a call that finds
// room is never delayed.
//
// # When Redis fails
//
// Redis never blocks a call for longer than Config.RedisTimeout (50 ms by default) and never
// fails one. When a round trip fails or times out, that call and the following ones are
// admitted on the local limits, and the Hooks.ModeChanged hook reports the switch. Locally,
// each replica admits its share of each limit: the limit divided by the number of replicas
// that shared it when Redis was last reached (each Limiter adds itself to a set in Redis
// every second), starting from the shared state as its last admission saw it. The background
// goroutine tries Redis again after 100 ms, then twice as long each time up to 500 ms, and
// returns to the shared quota as soon as Redis answers. Before it does, it tells Redis what
// happened meanwhile: the requests and tokens admitted locally, taken from the shared
// buckets, or, when Redis lost its state (a restart), what its local buckets still hold,
// scaled back to the whole limit. True-ups of shared reservations made before the failure
// are dropped; the shared state they would correct expires.
//
// # Cost
//
// A local admission (Reserve and Settle) takes a few hundred nanoseconds, most of it two
// clock reads, and one allocation; a shared one adds one Redis round trip
// (BenchmarkReserveSettleLocal, BenchmarkReserveSettleShared). Observe reads six headers
// without allocating (BenchmarkObserve).
package quota
