package quota

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// openaiHeader is what OpenAI sends on every response.
var openaiHeader = http.Header{
	"X-Ratelimit-Limit-Requests":     {"10000"},
	"X-Ratelimit-Limit-Tokens":       {"2000000"},
	"X-Ratelimit-Remaining-Requests": {"9999"},
	"X-Ratelimit-Remaining-Tokens":   {"1999982"},
	"X-Ratelimit-Reset-Requests":     {"6ms"},
	"X-Ratelimit-Reset-Tokens":       {"0s"},
}

// BenchmarkObserve is learning from one response's headers, as every response does.
func BenchmarkObserve(b *testing.B) {
	l, err := New(Config{Limits: map[string]Limits{"llm": {RequestsPerMinute: 1 << 30, TokensPerMinute: 1 << 40}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		l.Observe("llm", openaiHeader, http.StatusOK)
	}
}

// epoch is where a synctest bubble's clock starts.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func TestParseLearned(t *testing.T) {
	synctest.Test(t, testParseLearned)
}

func testParseLearned(t *testing.T) {
	for _, tc := range []struct {
		name   string
		h      http.Header
		status int
		want   Learned
	}{
		{"nothing", http.Header{}, 200, nothingLearned},
		{"openai", openaiHeader, 200, Learned{10000, 2000000, 9999, 1999982, 6 * time.Millisecond, 0, -1}},
		{"durations", http.Header{
			"X-Ratelimit-Reset-Requests": {"1m30.5s"},
			"X-Ratelimit-Reset-Tokens":   {"6m0s"},
		}, 200, Learned{-1, -1, -1, -1, 90500 * time.Millisecond, 6 * time.Minute, -1}},
		{"plain seconds", http.Header{
			"X-Ratelimit-Reset-Requests": {"2"},
			"X-Ratelimit-Reset-Tokens":   {" 0.25 "},
		}, 200, Learned{-1, -1, -1, -1, 2 * time.Second, 250 * time.Millisecond, -1}},
		{"malformed", http.Header{
			"X-Ratelimit-Limit-Requests":     {"-5"},
			"X-Ratelimit-Limit-Tokens":       {"1e6"},
			"X-Ratelimit-Remaining-Requests": {"12.5"},
			"X-Ratelimit-Remaining-Tokens":   {""},
			"X-Ratelimit-Reset-Requests":     {"-1s"},
			"X-Ratelimit-Reset-Tokens":       {"soon"},
		}, 200, nothingLearned},
		{"clamped", http.Header{
			"X-Ratelimit-Limit-Requests": {"99999999999999999999999999"},
			"X-Ratelimit-Reset-Requests": {"1000h"},
		}, 200, Learned{maxCount, -1, -1, -1, maxLearnedWait, -1, -1}},
		{"429 seconds", http.Header{"Retry-After": {"20"}, "X-Ratelimit-Remaining-Requests": {"0"}}, 429,
			Learned{-1, -1, 0, -1, -1, -1, 20 * time.Second}},
		{"429 milliseconds", http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"20"}}, 429,
			Learned{-1, -1, -1, -1, -1, -1, 1500 * time.Millisecond}},
		{"429 date", http.Header{"Retry-After": {epoch.Add(90 * time.Second).Format(http.TimeFormat)}}, 429,
			Learned{-1, -1, -1, -1, -1, -1, 90 * time.Second}},
		{"429 a year", http.Header{"Retry-After": {"31536000"}}, 429, Learned{-1, -1, -1, -1, -1, -1, maxLearnedWait}},
		{"503 retry-after is no quota fact", http.Header{"Retry-After": {"20"}}, 503, nothingLearned},
	} {
		if got := parseLearned(tc.h, tc.status); got != tc.want {
			t.Errorf("%s: parseLearned = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// FuzzParseLearned checks the header parser against simple references: strconv for counts,
// strconv.ParseFloat for plain seconds and time.ParseDuration for durations; and that every
// value is bounded and nothing panics.
func FuzzParseLearned(f *testing.F) {
	f.Add("10000", "9999", "6m0s", "20", true)
	f.Add("99999999999999999999", "0", "1m30.5s", "Wed, 21 Oct 2015 07:28:00 GMT", true)
	f.Add("-1", "1.5", "0.5", "-3", false)
	f.Add(" 12 ", "", "9999999999999999999s", "1e3", true)
	f.Fuzz(func(t *testing.T, count, remaining, reset, retryAfter string, tooMany bool) {
		status := http.StatusOK
		if tooMany {
			status = http.StatusTooManyRequests
		}
		h := http.Header{
			"X-Ratelimit-Limit-Requests":     {count},
			"X-Ratelimit-Remaining-Tokens":   {remaining},
			"X-Ratelimit-Reset-Requests":     {reset},
			"X-Ratelimit-Reset-Tokens":       {remaining},
			"Retry-After":                    {retryAfter},
			"X-Ratelimit-Remaining-Requests": {reset},
		}
		ld := parseLearned(h, status)
		if want := refCount(count); ld.LimitRequests != want {
			t.Errorf("count %q: %d, want %d", count, ld.LimitRequests, want)
		}
		if want := refCount(remaining); ld.RemainingTokens != want {
			t.Errorf("count %q: %d, want %d", remaining, ld.RemainingTokens, want)
		}
		for _, v := range []string{reset, remaining} {
			got := parseReset(v)
			if want, exact := refReset(v); got != want && (exact || math.Abs(float64(got-want)) > 2) {
				t.Errorf("reset %q: %v, want %v", v, got, want)
			}
		}
		for _, c := range []int{ld.LimitRequests, ld.LimitTokens, ld.RemainingRequests, ld.RemainingTokens} {
			if c < -1 || c > maxCount {
				t.Errorf("count %d out of bounds", c)
			}
		}
		for _, d := range []time.Duration{ld.ResetRequests, ld.ResetTokens, ld.RetryAfter} {
			if d < -1 || d > maxLearnedWait {
				t.Errorf("duration %v out of bounds", d)
			}
		}
		if !tooMany && ld.RetryAfter != -1 {
			t.Errorf("RetryAfter %v learned from status %d", ld.RetryAfter, status)
		}
	})
}

func refCount(v string) int {
	v = strings.TrimSpace(v)
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return -1
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > maxCount {
		return maxCount // only overflow fails on digits
	}
	return int(n)
}

// refReset returns what parseReset should give for v, and whether that is exact (false: a
// float computation, within 2ns).
func refReset(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v != "" && strings.Trim(v, "0123456789.") == "" && strings.Count(v, ".") <= 1 && v != "." {
		s, err := strconv.ParseFloat(v, 64)
		switch {
		case err != nil:
			return -1, true
		case s*1e9 >= 9.3e18:
			return -1, true // beyond time.Duration
		case s*1e9 >= 9.2e18:
			return parseReset(v), true // too close to the edge to call
		case s > maxLearnedWait.Seconds():
			return maxLearnedWait, true
		}
		return time.Duration(s * 1e9), false
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return -1, true
	}
	return min(d, maxLearnedWait), true
}
