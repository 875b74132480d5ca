package llmtest

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// A RateLimit is a provider's per-minute limits, which the server enforces as the OpenAI API
// enforces an organisation's ([WithRateLimit]). Each limit is a bucket that holds up to its
// per-minute value and refills continuously, that value per minute, from full at the start.
// A request is charged when it is answered, after validation: 1 request, and its tokens (its
// prompt tokens by [CountTokens], plus max_completion_tokens, max_tokens or
// max_output_tokens, or, when none is given, the completion tokens the server will report).
// A request a bucket cannot pay gets 429 and is not charged. Only the routes that take a
// model are limited (chat, completions, responses, embeddings); a request that a fault
// answers before it is routed (an error status, an Envoy reply, a reset) is not charged.
type RateLimit struct {
	// RequestsPerMinute is the requests bucket's size and refill per minute; 0 means no request
	// limit. At most 300,000,000.
	RequestsPerMinute int
	// TokensPerMinute is the tokens bucket's size and refill per minute; 0 means no token
	// limit. At most 300,000,000. A request whose tokens exceed it can never pass: it gets
	// 429 "Request too large" without a retry hint.
	TokensPerMinute int
	// NoHeaders turns off the x-ratelimit-* headers (default: sent), so that a test can
	// compare a client that cannot learn from them; the limits still apply.
	NoHeaders bool
	// Window is how long the limits' "minute" lasts: each bucket refills its whole size
	// over it. 0 means a minute, the longest allowed; a test over real time shortens it
	// (with the client's own window to match) rather than run for minutes.
	Window time.Duration
}

// maxPerMinute bounds a RateLimit's values, so that a bucket's arithmetic (in units of
// 1/limit nanoseconds) fits in 64 bits.
const maxPerMinute = 300_000_000

// WithRateLimit makes the server enforce l (default: no limits). Every response of a limited
// route then carries OpenAI's headers (unless l.NoHeaders):
//
//	x-ratelimit-limit-requests: 600           x-ratelimit-limit-tokens: 60000
//	x-ratelimit-remaining-requests: 599       x-ratelimit-remaining-tokens: 59970
//	x-ratelimit-reset-requests: 100ms         x-ratelimit-reset-tokens: 30ms
//
// (remaining: what the bucket holds after this request's charge, in whole units; reset: the
// time until the bucket is full again, a Go duration rounded up to the millisecond, such as
// "6m0s", "1s", "20ms" or "1m30.5s"; a pair is left out when its limit is 0). A request a
// bucket cannot pay gets 429 with Retry-After (whole seconds, rounded up), retry-after-ms, and
// OpenAI's body:
//
//	{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-llmtest on
//	requests per min (RPM): Limit 600, Used 600, Requested 1. Please try again in 100ms.",
//	"type":"requests","param":null,"code":"rate_limit_exceeded"}}
//
// (type "tokens" and "tokens per min (TPM)" for the tokens bucket). The buckets run on the
// server's clock, so under testing/synctest they refill with the fake clock.
// [Server.RateLimitCounts] counts the decisions.
func WithRateLimit(l RateLimit) Option {
	return optionFunc(func(c *config) {
		for _, v := range []struct {
			name string
			n    int
		}{{"RequestsPerMinute", l.RequestsPerMinute}, {"TokensPerMinute", l.TokensPerMinute}} {
			if v.n < 0 || v.n > maxPerMinute {
				c.invalid("WithRateLimit: %s %d is outside 0 to %d", v.name, v.n, maxPerMinute)
			}
		}
		if l.Window < 0 || l.Window > time.Minute {
			c.invalid("WithRateLimit: Window %v is outside 0 to 1m (a bucket's arithmetic must fit 64 bits)", l.Window)
		}
		c.rateLimit = l
	})
}

// RateLimitCounts counts the decisions of the server's rate limits.
type RateLimitCounts struct {
	// Admitted is the number of requests the limits let through (and charged).
	Admitted int
	// LimitedRequests is the number of 429s sent because the requests bucket was empty.
	LimitedRequests int
	// LimitedTokens is the number of 429s sent because the tokens bucket could not pay,
	// including requests larger than TokensPerMinute.
	LimitedTokens int
}

// RateLimitCounts returns the counts of the rate limits' decisions so far (zero without
// [WithRateLimit]).
func (s *Server) RateLimitCounts() RateLimitCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limits == nil {
		return RateLimitCounts{}
	}
	return s.limits.counts
}

// A bucket holds up to limit units and refills continuously, limit per period (a minute,
// or RateLimit.Window). Its state is its debt, how far it is below full, in units of 1/limit
// nanosecond: a unit costs a period of debt and each nanosecond repays limit, so refills and
// charges are exact.
type bucket struct {
	limit  uint64
	period uint64 // nanoseconds
	debt   uint64
	at     time.Time // when debt was last brought up to date
}

// settle repays the debt for the time since the last settlement.
func (b *bucket) settle(now time.Time) {
	if !now.After(b.at) {
		return
	}
	elapsed := min(uint64(now.Sub(b.at)), b.period)
	b.debt -= min(b.debt, elapsed*b.limit)
	b.at = now
}

// remaining returns the whole units the bucket holds.
func (b *bucket) remaining() uint64 { return b.limit - ceilDiv(b.debt, b.period) }

// wait returns how long until the bucket holds n units (n <= limit); 0 if it does now.
func (b *bucket) wait(n uint64) time.Duration {
	allowed := (b.limit - n) * b.period
	if b.debt <= allowed {
		return 0
	}
	return time.Duration(ceilDiv(b.debt-allowed, b.limit))
}

// untilFull returns how long until the bucket is full.
func (b *bucket) untilFull() time.Duration { return time.Duration(ceilDiv(b.debt, b.limit)) }

func ceilDiv(a, b uint64) uint64 { return a/b + min(a%b, 1) }

// limiter holds the server's rate-limit buckets (nil: no such limit). It is guarded by
// Server.mu.
type limiter struct {
	requests, tokens *bucket
	counts           RateLimitCounts
}

func newLimiter(l RateLimit) *limiter {
	if l.RequestsPerMinute == 0 && l.TokensPerMinute == 0 {
		return nil
	}
	lim := &limiter{}
	period := uint64(time.Minute)
	if l.Window > 0 {
		period = uint64(l.Window)
	}
	if l.RequestsPerMinute > 0 {
		lim.requests = &bucket{limit: uint64(l.RequestsPerMinute), period: period}
	}
	if l.TokensPerMinute > 0 {
		lim.tokens = &bucket{limit: uint64(l.TokensPerMinute), period: period}
	}
	return lim
}

// A verdict is the limiter's decision on one request.
type verdict struct {
	header http.Header   // the x-ratelimit-* headers
	err    *apiError     // the 429 body; nil if admitted
	wait   time.Duration // the retry hint of a 429; 0: none
}

// A charge is what one bucket asks of a request.
type charge struct {
	b      *bucket
	cost   uint64
	name   string // "requests" or "tokens": the error type and the headers' suffix
	period string // the limit's name in error messages
}

// refusal returns the 429 of a bucket that cannot pay (nil if it can) and its retry hint.
func (c charge) refusal(model string) (*apiError, time.Duration) {
	if c.cost > c.b.limit {
		return rateLimitError(fmt.Sprintf("Request too large for %s in organization org-llmtest on %s: Limit %d, Requested %d. The input or output tokens must be reduced in order to run successfully.",
			model, c.period, c.b.limit, c.cost), c.name), 0
	}
	wait := c.b.wait(c.cost)
	if wait == 0 {
		return nil, 0
	}
	return rateLimitError(fmt.Sprintf("Rate limit reached for %s in organization org-llmtest on %s: Limit %d, Used %d, Requested %d. Please try again in %s.",
		model, c.period, c.b.limit, c.b.limit-c.b.remaining(), c.cost, formatReset(wait)), c.name), wait
}

// decide settles the buckets at now and decides on a request for model that costs tokens:
// it charges the request if every bucket can pay, else refuses it (the requests bucket is
// asked first).
func (l *limiter) decide(now time.Time, model string, tokens int) verdict {
	var v verdict
	charges := make([]charge, 0, 2)
	if l.requests != nil {
		charges = append(charges, charge{l.requests, 1, "requests", "requests per min (RPM)"})
	}
	if l.tokens != nil {
		charges = append(charges, charge{l.tokens, uint64(max(tokens, 0)), "tokens", "tokens per min (TPM)"})
	}
	for _, c := range charges {
		c.b.settle(now)
		if v.err != nil {
			continue
		}
		if v.err, v.wait = c.refusal(model); v.err != nil && c.b == l.requests {
			l.counts.LimitedRequests++
		} else if v.err != nil {
			l.counts.LimitedTokens++
		}
	}
	if v.err == nil {
		l.counts.Admitted++
	}
	v.header = make(http.Header)
	for _, c := range charges {
		if v.err == nil {
			c.b.debt += c.cost * c.b.period
		}
		v.header.Set("X-Ratelimit-Limit-"+c.name, strconv.FormatUint(c.b.limit, 10))
		v.header.Set("X-Ratelimit-Remaining-"+c.name, strconv.FormatUint(c.b.remaining(), 10))
		v.header.Set("X-Ratelimit-Reset-"+c.name, formatReset(c.b.untilFull()))
	}
	return v
}

func rateLimitError(message, typ string) *apiError {
	return newAPIError(http.StatusTooManyRequests, typ, message, "", "rate_limit_exceeded")
}

// formatReset writes d as OpenAI writes its x-ratelimit-reset-* headers and "try again in"
// hints: a Go duration rounded up to the millisecond ("6m0s", "1s", "20ms", "1m30.5s").
func formatReset(d time.Duration) string {
	return (d + time.Millisecond - 1).Truncate(time.Millisecond).String()
}

// admit charges a request for model that costs tokens to the server's rate limits: it sets
// the x-ratelimit-* headers and reports true, or answers 429 and reports false.
func (x *exchange) admit(model string, tokens int) bool {
	s := x.s
	s.mu.Lock()
	if s.limits == nil {
		s.mu.Unlock()
		return true
	}
	v := s.limits.decide(time.Now(), model, tokens)
	s.mu.Unlock()
	h := x.w.Header()
	if !s.cfg.rateLimit.NoHeaders {
		for k, vs := range v.header {
			h[k] = vs
		}
	}
	if v.err == nil {
		return true
	}
	if v.wait > 0 {
		setRetryAfter(h, v.wait, RetryAfterSecondsAndMillis)
	}
	x.writeAPIError(v.err)
	return false
}

// generate returns the answer to a valid request for model with prompt tokens, a completion
// token limit (0: none) and the function it forces (nil: none), once the rate limits admit
// it; false if they refused it (the 429 is written). The request is charged its prompt
// and its limit, or without a limit the completion tokens of the answer.
func (x *exchange) generate(model string, prompt, limit int, fn *functionTool) (answer, bool) {
	a := x.s.answerFor(limit, fn)
	budget := limit
	if budget == 0 {
		budget = x.s.completionTokens(a)
	}
	return a, x.admit(model, prompt+budget)
}
