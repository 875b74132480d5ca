package breaker

import (
	"context"
	"fmt"
	"math"
	"time"
)

// WindowType selects how the closed breaker's sliding window is measured.
type WindowType int

const (
	// WindowCount (the zero value) keeps the outcomes of the last WindowSize
	// calls.
	WindowCount WindowType = iota
	// WindowTime keeps the outcomes of the last WindowSize seconds, in
	// one-second buckets: a call leaves the window when its bucket is
	// WindowSize buckets old, so the window spans between WindowSize-1 and
	// WindowSize seconds (as Resilience4j's time-based window). Buckets are
	// counted from the moment the Policy was created, on the monotonic clock.
	WindowTime
)

// String returns "count" or "time".
func (w WindowType) String() string {
	switch w {
	case WindowCount:
		return "count"
	case WindowTime:
		return "time"
	}
	return fmt.Sprintf("WindowType(%d)", int(w))
}

// NoTimeout, as Config.Timeout, Config.PerTryTimeout or an [Overrides] field,
// switches that time limit off.
const NoTimeout time.Duration = -1

// Defaults of [Config]: a zero field takes the value here. They are the
// Resilience4j settings a typical production LLM service uses, and Envoy's
// retry_budget defaults.
const (
	DefaultWindowSize          = 20
	DefaultMinimumCalls        = 5
	DefaultFailureRate         = 50.0
	DefaultSlowCallRate        = 100.0
	DefaultSlowCallDuration    = 120 * time.Second
	DefaultOpenDuration        = 30 * time.Second
	DefaultHalfOpenCalls       = 3
	DefaultMaxAttempts         = 2
	DefaultBackoffInitial      = 2 * time.Second
	DefaultBackoffMax          = 30 * time.Second
	DefaultBackoffMultiplier   = 2.0
	DefaultMaxRetryAfter       = 60 * time.Second
	DefaultBudgetPercent       = 20.0
	DefaultMinRetryConcurrency = 3
	DefaultTimeout             = 120 * time.Second
	DefaultMinTryTime          = 100 * time.Millisecond
)

// maxWindow bounds WindowSize and HalfOpenCalls, so a typo cannot allocate
// gigabytes.
const maxWindow = 1 << 20

// Config configures a [Policy]. The zero value gives the documented defaults;
// every field's zero means its default. A negative or contradictory value is an
// error from [New] that names the field and the value, never silently fixed.
type Config struct {
	// Name identifies the policy in OnStateChange. Optional.
	Name string

	// WindowType selects a count-based (default) or time-based sliding window
	// for the closed state.
	WindowType WindowType
	// WindowSize is the window's length: calls for WindowCount, seconds for
	// WindowTime. 0 means 20; at most 1<<20.
	WindowSize int
	// MinimumCalls is how many calls the window must hold before any rate is
	// judged. 0 means 5. With a count window it is capped at WindowSize (as in
	// Resilience4j), since the window can never hold more.
	MinimumCalls int
	// FailureRate is the failure percentage, in (0,100], at or above which the
	// breaker opens. 0 means 50. Failures over failures plus successes;
	// excluded calls count as neither.
	FailureRate float64
	// SlowCallRate is the percentage of slow calls, in (0,100], at or above
	// which the breaker opens, independently of FailureRate. 0 means 100.
	SlowCallRate float64
	// SlowCallDuration is how long a call must take, strictly, to count as
	// slow. A slow success is slow and not a failure; a slow failure is both.
	// 0 means 120s.
	SlowCallDuration time.Duration
	// OpenDuration is how long the breaker stays open; the first call at or
	// after it finds the breaker half-open. 0 means 30s.
	OpenDuration time.Duration
	// HalfOpenCalls is how many trial calls the half-open breaker admits; any
	// other call is rejected with ErrOpen. Once all of them have completed,
	// their failure and slow-call rates are judged against FailureRate and
	// SlowCallRate: at or above either, the breaker opens again; below both, it
	// closes. An excluded trial call frees its slot for another.
	//
	// 0 means the default, 3, as everywhere in Config, so "zero trial calls"
	// cannot be asked for: a half-open breaker that admits nothing would never
	// close. Negative values are an error. Use 1 for a single probe.
	HalfOpenCalls int

	// MaxAttempts is the number of attempts in all, the first included; 1
	// turns retries off. 0 means 2.
	MaxAttempts int
	// Backoff shapes the wait between attempts (full jitter).
	Backoff Backoff
	// MaxRetryAfter caps the upstream's wait hint: a hint above it means no
	// retry (ErrRetryAfterTooLong). 0 means 60s.
	MaxRetryAfter time.Duration
	// BudgetPercent is the share, in (0,100], of this policy's calls in flight
	// that may be retrying at once (Envoy's retry_budget.budget_percent). A
	// retry over the budget is not made: the call fails with its own error and
	// Reason ErrBudgetExhausted. 0 means 20.
	BudgetPercent float64
	// MinRetryConcurrency is the number of concurrent retries always allowed,
	// whatever BudgetPercent gives (retry_budget.min_retry_concurrency). 0
	// means 3; at least 1 is always allowed.
	MinRetryConcurrency int
	// MinTryTime is the least time an attempt must have before the deadline
	// (the caller's or Timeout's) for a retry to be worth making: a retry is
	// made only if the wait plus MinTryTime (or PerTryTimeout, when shorter)
	// ends by the deadline; otherwise Do stops with ErrDeadlineTooShort at
	// once, leaving the time to a fallback. 0 means 100ms.
	MinTryTime time.Duration

	// Timeout bounds the whole call, retries and waits included. 0 means
	// 120s; NoTimeout switches it off.
	Timeout time.Duration
	// PerTryTimeout bounds each attempt. 0 or NoTimeout means none.
	PerTryTimeout time.Duration

	// Classifier judges each attempt's error. nil means DefaultClassifier.
	Classifier Classifier
	// Hooks observe the policy. Nil hooks are skipped.
	Hooks Hooks
}

// Backoff shapes the wait before each retry: the n-th retry waits a random
// duration in [0, min(Max, Initial*Multiplier^(n-1))] ("full jitter"), but at
// least the upstream's RetryAfter hint.
type Backoff struct {
	// Initial is the first interval. 0 means 2s.
	Initial time.Duration
	// Max caps the interval. 0 means 30s, or Initial if that is longer; it
	// must not be below Initial.
	Max time.Duration
	// Multiplier grows the interval after each retry; at least 1. 0 means 2.
	Multiplier float64
}

// Hooks observe a [Policy]. Each hook runs with no lock of the policy held, so
// it may call [Policy.State] or even [Do]; it should return quickly, since the
// call that triggered it waits.
type Hooks struct {
	// OnStateChange reports a breaker transition. Transitions are reported one
	// at a time, in the order they happened, possibly from another goroutine
	// than the call that caused them.
	OnStateChange func(name string, from, to State)
	// OnRetry is called before the wait that precedes a retry. ctx is the
	// caller's context (it carries the caller's span).
	OnRetry func(ctx context.Context, e RetryEvent)
	// OnBudgetRejected is called when the retry budget refused a retry.
	OnBudgetRejected func(ctx context.Context, e RetryEvent)
}

// RetryEvent describes a retry, or a retry the budget refused.
type RetryEvent struct {
	// Attempt is the number of the attempt that failed (1 for the first);
	// the retry is attempt Attempt+1.
	Attempt int
	// Wait is the wait before the retry.
	Wait time.Duration
	// Err is the failed attempt's error.
	Err error
	// Verdict is the classifier's verdict on Err.
	Verdict Verdict
}

// Overrides change a policy's time limits and attempts for the calls of one
// context; see [WithOverrides]. A zero field keeps the policy's value.
type Overrides struct {
	// Timeout replaces Config.Timeout; NoTimeout (any negative) switches it off.
	Timeout time.Duration
	// PerTryTimeout replaces Config.PerTryTimeout; NoTimeout (any negative)
	// switches it off.
	PerTryTimeout time.Duration
	// MaxAttempts replaces Config.MaxAttempts; a negative value means 1.
	MaxAttempts int
}

type overridesKey struct{}

// WithOverrides returns a context whose calls through [Do] use o in place of the
// policy's values (for example a stream's first-token timeout as the per-try
// timeout and no overall timeout). They apply to every Do given ctx or a
// context derived from it, including Do calls made inside fn.
func WithOverrides(ctx context.Context, o Overrides) context.Context {
	return context.WithValue(ctx, overridesKey{}, o)
}

// settings are a validated Config with the defaults filled in.
type settings struct {
	windowType    WindowType
	windowSize    int
	minCalls      int
	failureRate   float64
	slowRate      float64
	slowDuration  time.Duration
	openDuration  time.Duration
	halfOpenCalls int
	maxAttempts   int
	boInitial     time.Duration
	boMax         time.Duration
	boMultiplier  float64
	maxRetryAfter time.Duration
	budgetPercent float64
	minRetryConc  int64
	minTryTime    time.Duration
	timeout       time.Duration // 0 = none
	perTryTimeout time.Duration // 0 = none
	classifier    Classifier
	hooks         Hooks
}

func fieldErr(field string, value any, rule string) error {
	return fmt.Errorf("breaker: %s %v %s", field, value, rule)
}

func intField(field string, v, def, hi int, out *int) error {
	switch {
	case v == 0:
		*out = def
	case v < 0 || v > hi:
		return fieldErr(field, v, fmt.Sprintf("out of range [1,%d] (0 means %d)", hi, def))
	default:
		*out = v
	}
	return nil
}

func percentField(field string, v, def float64, out *float64) error {
	switch {
	case v == 0:
		*out = def
	case math.IsNaN(v) || v < 0 || v > 100:
		return fieldErr(field, v, "out of range (0,100]")
	default:
		*out = v
	}
	return nil
}

func durationField(field string, v, def time.Duration, out *time.Duration) error {
	switch {
	case v == 0:
		*out = def
	case v < 0:
		return fieldErr(field, v, "is negative")
	default:
		*out = v
	}
	return nil
}

// timeoutField accepts NoTimeout (giving 0 = none) besides positive values.
func timeoutField(field string, v, def time.Duration, out *time.Duration) error {
	switch {
	case v == 0:
		*out = def
	case v == NoTimeout:
		*out = 0
	case v < 0:
		return fieldErr(field, v, "is negative (use NoTimeout to switch it off)")
	default:
		*out = v
	}
	return nil
}

func (c *Config) settings() (settings, error) {
	var s settings
	var err error
	check := func(e error) {
		if err == nil {
			err = e
		}
	}
	switch c.WindowType {
	case WindowCount, WindowTime:
		s.windowType = c.WindowType
	default:
		check(fieldErr("WindowType", int(c.WindowType), "is not WindowCount or WindowTime"))
	}
	check(intField("WindowSize", c.WindowSize, DefaultWindowSize, maxWindow, &s.windowSize))
	check(intField("MinimumCalls", c.MinimumCalls, DefaultMinimumCalls, math.MaxInt32, &s.minCalls))
	if s.windowType == WindowCount && s.minCalls > s.windowSize && s.windowSize > 0 {
		s.minCalls = s.windowSize
	}
	check(percentField("FailureRate", c.FailureRate, DefaultFailureRate, &s.failureRate))
	check(percentField("SlowCallRate", c.SlowCallRate, DefaultSlowCallRate, &s.slowRate))
	check(durationField("SlowCallDuration", c.SlowCallDuration, DefaultSlowCallDuration, &s.slowDuration))
	check(durationField("OpenDuration", c.OpenDuration, DefaultOpenDuration, &s.openDuration))
	check(intField("HalfOpenCalls", c.HalfOpenCalls, DefaultHalfOpenCalls, maxWindow, &s.halfOpenCalls))
	check(intField("MaxAttempts", c.MaxAttempts, DefaultMaxAttempts, math.MaxInt32, &s.maxAttempts))
	check(durationField("Backoff.Initial", c.Backoff.Initial, DefaultBackoffInitial, &s.boInitial))
	check(durationField("Backoff.Max", c.Backoff.Max, max(DefaultBackoffMax, s.boInitial), &s.boMax))
	switch m := c.Backoff.Multiplier; {
	case m == 0:
		s.boMultiplier = DefaultBackoffMultiplier
	case math.IsNaN(m) || math.IsInf(m, 0) || m < 1:
		check(fieldErr("Backoff.Multiplier", m, "out of range [1,+Inf) (0 means 2)"))
	default:
		s.boMultiplier = m
	}
	if err == nil && s.boMax < s.boInitial {
		check(fmt.Errorf("breaker: Backoff.Max %v is below Backoff.Initial %v", s.boMax, s.boInitial))
	}
	check(durationField("MaxRetryAfter", c.MaxRetryAfter, DefaultMaxRetryAfter, &s.maxRetryAfter))
	check(percentField("BudgetPercent", c.BudgetPercent, DefaultBudgetPercent, &s.budgetPercent))
	var mrc int
	check(intField("MinRetryConcurrency", c.MinRetryConcurrency, DefaultMinRetryConcurrency, math.MaxInt32, &mrc))
	s.minRetryConc = int64(mrc)
	check(durationField("MinTryTime", c.MinTryTime, DefaultMinTryTime, &s.minTryTime))
	check(timeoutField("Timeout", c.Timeout, DefaultTimeout, &s.timeout))
	check(timeoutField("PerTryTimeout", c.PerTryTimeout, 0, &s.perTryTimeout))
	s.classifier = c.Classifier
	if s.classifier == nil {
		s.classifier = DefaultClassifier
	}
	s.hooks = c.Hooks
	return s, err
}
