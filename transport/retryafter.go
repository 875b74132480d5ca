package transport

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxHint is the largest wait hint ParseRetryAfter returns; larger values are clamped so that
// a huge hint stays huge (a policy's MaxRetryAfter then refuses it) instead of overflowing.
const maxHint = time.Duration(math.MaxInt64)

// ParseRetryAfter returns the server's wait hint from h.
//
// A retry-after-ms header (milliseconds, possibly fractional, as OpenAI and Azure OpenAI send
// it) takes precedence when it parses, as OpenAI's own SDKs do. Otherwise Retry-After is read
// as delay-seconds (a fractional value is accepted) or as an HTTP date, which is taken relative
// to now; a date in the past gives 0 and ok. A missing, negative, non-finite or malformed
// value gives ok false. Hints beyond the range of [time.Duration] are clamped to its maximum.
func ParseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, ok := parseNonNegative(v); ok {
			return scale(ms, float64(time.Millisecond)), true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, ok := parseNonNegative(v); ok {
		return scale(s, float64(time.Second)), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

// parseNonNegative parses a plain decimal number (digits with an optional fraction; no sign,
// exponent, hex or special values) as a float64.
func parseNonNegative(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	dot := false
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	if digits == 0 {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return 0, false
	}
	return f, true // a range error returns +Inf, which scale clamps
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// scale converts v units of unit nanoseconds to a Duration, clamped to [0, maxHint].
func scale(v, unit float64) time.Duration {
	ns := v * unit
	if ns >= float64(maxHint) || math.IsInf(ns, 1) {
		return maxHint
	}
	return time.Duration(ns)
}
