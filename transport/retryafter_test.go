package transport_test

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infermesh/infermesh/transport"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		ra, ms string
		want   time.Duration
		wantOK bool
	}{
		{"none", "", "", 0, false},
		{"seconds", "2", "", 2 * time.Second, true},
		{"zero", "0", "", 0, true},
		{"spaces", " 7 ", "", 7 * time.Second, true},
		{"fractional seconds", "1.5", "", 1500 * time.Millisecond, true},
		{"http date", now.Add(30 * time.Second).Format(http.TimeFormat), "", 30 * time.Second, true},
		{"rfc850 date", now.Add(10 * time.Second).Format(time.RFC850), "", 10 * time.Second, true},
		{"ansi c date", now.Add(5 * time.Second).Format(time.ANSIC), "", 5 * time.Second, true},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), "", 0, true},
		{"negative", "-1", "", 0, false},
		{"plus sign", "+3", "", 0, false},
		{"garbage", "soon", "", 0, false},
		{"exponent", "1e3", "", 0, false},
		{"inf", "Inf", "", 0, false},
		{"nan", "NaN", "", 0, false},
		{"hex", "0x10", "", 0, false},
		{"dot only", ".", "", 0, false},
		{"huge", "99999999999999999999999", "", time.Duration(math.MaxInt64), true},
		{"ms", "", "250", 250 * time.Millisecond, true},
		{"fractional ms", "", "20.5", 20500 * time.Microsecond, true},
		{"ms takes precedence", "10", "100", 100 * time.Millisecond, true},
		{"bad ms falls back", "3", "later", 3 * time.Second, true},
		{"negative ms falls back", "3", "-100", 3 * time.Second, true},
		{"bad both", "x", "y", 0, false},
		{"overflowing float", strings.Repeat("9", 400), "", time.Duration(math.MaxInt64), true},
		{"huge ms", "", "100000000000000000000000000000", time.Duration(math.MaxInt64), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.ra != "" {
				h.Set("Retry-After", tt.ra)
			}
			if tt.ms != "" {
				h.Set("retry-after-ms", tt.ms)
			}
			got, ok := transport.ParseRetryAfter(h, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseRetryAfter(Retry-After %q, retry-after-ms %q) = %v, %v; want %v, %v",
					tt.ra, tt.ms, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120", "", int64(0))
	f.Add("", "1500", int64(0))
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT", "", int64(1445412000))
	f.Add("1.25", "abc", int64(0))
	f.Add("-3", "-4", int64(-1))
	f.Add("99999999999999999999999999", "1e400", int64(0))
	f.Fuzz(func(t *testing.T, ra, ms string, nowUnix int64) {
		h := http.Header{}
		h.Set("Retry-After", ra)
		h.Set("Retry-After-Ms", ms)
		d, ok := transport.ParseRetryAfter(h, time.Unix(nowUnix%(1<<40), 0))
		if d < 0 {
			t.Fatalf("negative hint %v", d)
		}
		if !ok && d != 0 {
			t.Fatalf("hint %v with ok false", d)
		}
	})
}
