package quota

import (
	"net/http"
	"strings"
	"time"

	"github.com/infermesh/infermesh/transport"
)

// Bounds on what a response can make the Limiter believe, so that a wrong header cannot
// overflow arithmetic or block a key for ever.
const (
	// maxCount bounds a learned limit or remaining count.
	maxCount = 1 << 40
	// maxLearnedWait bounds a learned reset or Retry-After.
	maxLearnedWait = 24 * time.Hour
)

// Learned is what one response said about its key's quota at the provider. A field the
// response did not carry (or carried malformed) is -1.
type Learned struct {
	// LimitRequests and LimitTokens are x-ratelimit-limit-requests and
	// x-ratelimit-limit-tokens: the provider's limits, taken as counts per Config.Window.
	LimitRequests, LimitTokens int
	// RemainingRequests and RemainingTokens are x-ratelimit-remaining-requests and
	// x-ratelimit-remaining-tokens.
	RemainingRequests, RemainingTokens int
	// ResetRequests and ResetTokens are x-ratelimit-reset-requests and
	// x-ratelimit-reset-tokens: how long until the provider's limit is back to full. Values
	// like "6m0s", "1s", "20ms" or "1m30.5s" (Go durations), or plain seconds, are read.
	ResetRequests, ResetTokens time.Duration
	// RetryAfter is a 429's Retry-After (seconds or an HTTP date) or retry-after-ms.
	RetryAfter time.Duration
}

// nothingLearned is the Learned of a response without quota facts.
var nothingLearned = Learned{-1, -1, -1, -1, -1, -1, -1}

// Observe learns from one response of key: call it for every response, whatever its status.
// It lowers the key's limits to x-ratelimit-limit-*, and what the key holds to
// x-ratelimit-remaining-* (the bucket then refills at the limit's pace, so it is full again
// by the reset); when the limit is unknown, a remaining count of zero marks the key exhausted
// until x-ratelimit-reset-*. A 429's Retry-After marks the key exhausted until then, for every
// caller of this Limiter. In shared mode all of it also reaches the other replicas through
// Redis, within a round trip of the worker. Values are bounded (counts at 2^40, waits at 24
// hours).
func (l *Limiter) Observe(key string, h http.Header, status int) {
	ld := parseLearned(h, status)
	if ld == nothingLearned {
		return
	}
	k := l.key(key)
	window, share := int64(l.set.window), l.localShare()
	shared := l.sh != nil && l.sh.on.Load()
	k.mu.Lock()
	now := l.now()
	exhausted := k.learn(ld, now, share, window)
	if shared {
		k.pending.note(ld.RemainingRequests, ld.RemainingTokens, exhausted)
	}
	k.mu.Unlock()
	if shared {
		l.sh.wake()
	}
	if hk := l.hooks.Learned; hk != nil {
		hk(key, ld)
	}
}

// learn applies ld to the local view of the key and returns the instant until which ld says
// the key is exhausted (0 when it does not). The caller holds k.mu.
func (k *keyState) learn(ld Learned, now int64, share float64, window int64) (exhaustedUntil int64) {
	if ld.LimitRequests > 0 {
		k.learnedRequests = ld.LimitRequests
	}
	if ld.LimitTokens > 0 {
		k.learnedTokens = ld.LimitTokens
	}
	req, tok := k.effective()
	for _, r := range []struct {
		b         *bucket
		limit     float64
		remaining int
		reset     time.Duration
	}{{&k.requests, req, ld.RemainingRequests, ld.ResetRequests}, {&k.tokens, tok, ld.RemainingTokens, ld.ResetTokens}} {
		switch {
		case r.remaining < 0:
		case r.limit > 0:
			r.b.tighten(now, float64(r.remaining)*share, r.limit*share, window)
		case r.remaining == 0 && r.reset > 0:
			exhaustedUntil = max(exhaustedUntil, now+int64(r.reset))
		}
	}
	if ld.RetryAfter > 0 {
		exhaustedUntil = max(exhaustedUntil, now+int64(ld.RetryAfter))
	}
	k.exhaustedUntil = max(k.exhaustedUntil, exhaustedUntil)
	return exhaustedUntil
}

// parseLearned reads the quota facts of a response with the given status.
func parseLearned(h http.Header, status int) Learned {
	ld := Learned{
		LimitRequests:     parseCount(h.Get("X-Ratelimit-Limit-Requests")),
		LimitTokens:       parseCount(h.Get("X-Ratelimit-Limit-Tokens")),
		RemainingRequests: parseCount(h.Get("X-Ratelimit-Remaining-Requests")),
		RemainingTokens:   parseCount(h.Get("X-Ratelimit-Remaining-Tokens")),
		ResetRequests:     parseReset(h.Get("X-Ratelimit-Reset-Requests")),
		ResetTokens:       parseReset(h.Get("X-Ratelimit-Reset-Tokens")),
		RetryAfter:        -1,
	}
	if status == http.StatusTooManyRequests {
		if d, ok := transport.ParseRetryAfter(h, time.Now()); ok { // an HTTP date is relative
			ld.RetryAfter = min(d, maxLearnedWait)
		}
	}
	return ld
}

// parseCount reads a count of decimal digits, clamped at maxCount; anything else is -1.
func parseCount(v string) int {
	v = strings.TrimSpace(v)
	if v == "" {
		return -1
	}
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return -1
		}
		if n < maxCount {
			n = n*10 + int(c-'0')
		}
	}
	return min(n, maxCount)
}

// parseReset reads a reset: a Go duration such as "1m30.5s" or "20ms", or plain seconds such
// as "2" or "0.5", clamped at maxLearnedWait; anything else (negative, malformed, beyond the
// range of time.Duration) is -1.
func parseReset(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return -1
	}
	if isDecimal(v) {
		v += "s"
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return -1
	}
	return min(d, maxLearnedWait)
}

// isDecimal reports whether v is digits with at most one '.' among them.
func isDecimal(v string) bool {
	digits, dots := 0, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}
