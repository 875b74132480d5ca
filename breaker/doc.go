// Package breaker is infermesh's layered resilience policy: a circuit breaker,
// retries with a retry budget, and a time limiter around one call, with
// Resilience4j's semantics and service-mesh awareness. It knows nothing of
// HTTP, gRPC or LLMs; the transport and grpcinfer packages bring classifiers
// for those.
//
// A [Policy] is built once from a [Config] with [New] (the zero Config gives
// the Resilience4j settings a typical production LLM service uses) and guards
// one upstream; [Do] runs a call through it:
//
//	p, err := breaker.New(breaker.Config{Name: "openai", PerTryTimeout: 30 * time.Second})
//	...
//	resp, err := breaker.Do(ctx, p, func(ctx context.Context) (*Reply, error) { ... })
//
// # The layers
//
// Outer to inner, as Resilience4j composes them:
//
//	┌───────────────────────────────────────────────────────────────┐
//	│ time limiter: Config.Timeout, the whole call                  │
//	│ ┌───────────────────────────────────────────────────────────┐ │
//	│ │ retry: MaxAttempts, full-jitter Backoff, Retry-After,     │ │
//	│ │        deadline fitting, retry budget, mesh signals       │ │
//	│ │ ┌───────────────────────────────────────────────────────┐ │ │
//	│ │ │ circuit breaker: sliding window, rates, half-open     │ │ │
//	│ │ │ ┌───────────────────────────────────────────────────┐ │ │ │
//	│ │ │ │ time limiter: Config.PerTryTimeout, one attempt   │ │ │ │
//	│ │ │ │ ┌───────────────────────────────────────────────┐ │ │ │ │
//	│ │ │ │ │ fn(ctx)                                       │ │ │ │ │
//	│ │ │ │ └───────────────────────────────────────────────┘ │ │ │ │
//	│ │ │ └───────────────────────────────────────────────────┘ │ │ │
//	│ │ └───────────────────────────────────────────────────────┘ │ │
//	│ └───────────────────────────────────────────────────────────┘ │
//	└───────────────────────────────────────────────────────────────┘
//
// Every attempt passes the breaker, so each attempt counts in its window and a
// retry is rejected with [ErrOpen] once the breaker has opened.
//
// # Circuit breaker
//
// The state machine is github.com/sony/gobreaker/v2; this package adds the
// window Resilience4j users expect. While closed, the breaker keeps a sliding
// window of outcomes, count-based ([WindowCount], the last WindowSize calls)
// or time-based ([WindowTime], the last WindowSize seconds in one-second
// buckets). Once the window holds MinimumCalls calls, it opens when the
// failure rate or the slow-call rate is at or above its threshold (FailureRate,
// SlowCallRate); each trips on its own. A call slower than SlowCallDuration is
// slow: a slow success is slow and not a failure, a slow failure is both. An
// [OutcomeExcluded] call (the caller cancelled; an error the classifier blames
// on the caller) counts as neither.
//
// After OpenDuration the breaker is half-open and admits exactly HalfOpenCalls
// trial calls, rejecting the others with [ErrOpen] without running fn. When all
// trial calls have completed, their failure and slow-call rates are judged
// against the same thresholds: at or above either, the breaker opens again;
// below both, it closes with an empty window. A panic in fn counts as a
// failure; in a trial call it reopens the breaker at once.
//
// # Retries
//
// MaxAttempts counts all attempts. Every error is retried except the caller's
// own cancellation and an error whose [Verdict] is not retryable. The wait is a
// random duration in [0, interval] ("full jitter"; the interval grows from
// Backoff.Initial by Backoff.Multiplier up to Backoff.Max), but at least the
// upstream's Retry-After hint; a hint above MaxRetryAfter stops with
// [ErrRetryAfterTooLong]. A retry is made only if its wait plus MinTryTime
// ends by the deadline; otherwise [ErrDeadlineTooShort] comes at once, so a
// fallback still has time. A retry budget, as Envoy's retry_budget, lets at
// most BudgetPercent of the calls in flight on the Policy be retrying (at
// least MinRetryConcurrency), so application retries and mesh retries cannot
// multiply into a storm.
//
// # Classification and the mesh
//
// A [Classifier] turns each attempt's error into a [Verdict]: an [Outcome],
// whether it is retryable, a [Class], a wait hint and mesh [Signals].
// [DefaultClassifier] asks errors that implement [Verdicter] first. The
// signals say what the sidecar already did: MeshRetried (no retry on top),
// NoHealthyUpstream (fail at once with [ErrNoHealthyUpstream] so a fallback
// can act), Overloaded (back off at least the hint).
//
// # Time limiter
//
// Timeout bounds the whole call and PerTryTimeout each attempt; fn's ctx
// carries the earlier deadline, as a context.WithDeadlineCause ctx whose cause
// is [ErrTimeout] or [ErrPerTryTimeout]. When either applies, fn runs on its
// own goroutine and Do returns at the deadline even if fn ignores its ctx; the
// abandoned goroutine finishes on its own and its result is discarded. A
// timed-out attempt fails with [ErrTimeout] or [ErrPerTryTimeout], which wrap
// context.DeadlineExceeded. A panic in fn is raised again in Do while Do waits
// for fn. [WithOverrides] changes the limits and attempts for one context, as a
// stream needs (a first-token per-try timeout and no overall timeout).
//
// # Errors and hooks
//
// A failed Do returns an [*Error] that wraps the last attempt's error
// ("breaker: 2 attempts: <last error>"), so errors.Is and errors.As reach it,
// and matches its reason with errors.Is ([ErrOpen], [ErrRetriesExhausted],
// ...). [ClassOf] gives the [Class] of any error of this module. [Hooks]
// report state changes, retries and budget rejections with no lock held, so a
// hook may call [Policy.State] or even [Do].
package breaker
