package tracing

import "go.opentelemetry.io/otel/attribute"

// Attribute keys infermesh adds to the GenAI semantic conventions. Durations
// are in seconds (float64), as the conventions' own durations are.
const (
	// AttemptsKey (int) on a call span: how many attempts the call made,
	// counting the first.
	AttemptsKey = attribute.Key("infermesh.attempts")
	// AttemptKey (int) on an attempt span: its 1-based number. Also on retry
	// and budget events: the attempt that failed.
	AttemptKey = attribute.Key("infermesh.attempt")
	// RetryWaitKey (float64, s) on a retry event: the wait before the next attempt.
	RetryWaitKey = attribute.Key("infermesh.retry.wait")
	// RetryReasonKey (string) on a retry or budget event and on the retries
	// counter: why the attempt failed (an error class such as "rate_limited").
	RetryReasonKey = attribute.Key("infermesh.retry.reason")
	// BreakerStateKey (string) on a call span: the circuit breaker state seen
	// by the call ("closed", "half-open", "open").
	BreakerStateKey = attribute.Key("infermesh.breaker.state")
	// BreakerNameKey, BreakerFromKey and BreakerToKey (string) on the breaker
	// transitions counter.
	BreakerNameKey = attribute.Key("infermesh.breaker.name")
	BreakerFromKey = attribute.Key("infermesh.breaker.from")
	BreakerToKey   = attribute.Key("infermesh.breaker.to")
	// FallbackTargetKey (string) on a call span, fallback event, fallback
	// span and the fallbacks counter: the fallback target that was used.
	FallbackTargetKey = attribute.Key("infermesh.fallback.target")
	// MeshUpstreamServiceTimeKey (float64, s): the upstream time the mesh
	// reported (x-envoy-upstream-service-time).
	MeshUpstreamServiceTimeKey = attribute.Key("infermesh.mesh.upstream_service_time")
	// MeshClientTimeKey (float64, s): the client-observed time of the same
	// exchange, recorded together with the upstream time.
	MeshClientTimeKey = attribute.Key("infermesh.mesh.client_time")
	// MeshOverheadKey (float64, s): client time minus upstream time, the cost
	// of the mesh hop(s) for this call.
	MeshOverheadKey = attribute.Key("infermesh.mesh.overhead")
	// MeshOverloadedKey (bool): the sidecar shed load (x-envoy-overloaded).
	MeshOverloadedKey = attribute.Key("infermesh.mesh.overloaded")
	// MeshAttemptCountKey (int): the mesh's own attempt count (x-envoy-attempt-count).
	MeshAttemptCountKey = attribute.Key("infermesh.mesh.attempt_count")
	// StreamChunksKey (int) on a streamed call span: the chunks observed.
	StreamChunksKey = attribute.Key("infermesh.stream.chunks")

	// BackendKey is the named backend a steered call (or attempt) went to.
	BackendKey = attribute.Key("infermesh.backend")
	// HedgeKey reports that a call was hedged on a second backend after a slow
	// first chunk; HedgeWinnerKey names the backend whose answer the caller got.
	HedgeKey       = attribute.Key("infermesh.hedge")
	HedgeWinnerKey = attribute.Key("infermesh.hedge.winner")
)

// Legacy keys that existing dashboards read (llm.*), set unless Config.DisableLegacyLLMTags.
const (
	LegacyModelKey        = attribute.Key("llm.model")
	LegacyInputTokensKey  = attribute.Key("llm.input_tokens")
	LegacyOutputTokensKey = attribute.Key("llm.output_tokens")
	LegacyTotalTokensKey  = attribute.Key("llm.total_tokens")
	LegacyRequestIDKey    = attribute.Key("request.id")
)

// Event names.
const (
	// RetryEvent is added to a call span for each retry.
	RetryEvent = "infermesh.retry"
	// BudgetRejectedEvent is added when the retry budget refused a retry.
	BudgetRejectedEvent = "infermesh.budget.rejected"
	// FallbackEvent is added when the call is handed to a fallback target.
	FallbackEvent = "infermesh.fallback"
)

// AttemptSpanName is the name of per-attempt child spans.
const AttemptSpanName = "infermesh.attempt"

// ErrorTypeOther is the error.type recorded for an error of no known class.
const ErrorTypeOther = "_OTHER"
