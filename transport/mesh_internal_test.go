package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestWaitReadyBackoff checks the polling schedule in fake time: exponential from 50 ms with
// 20% jitter, capped at 1 s.
func TestWaitReadyBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var at []time.Duration
		start := time.Now()
		probe := func(context.Context) (int, error) {
			at = append(at, time.Since(start))
			if len(at) < 10 {
				return http.StatusServiceUnavailable, nil
			}
			return http.StatusOK, nil
		}
		if err := waitReady(t.Context(), "fake", newWaitBackoff(), probe); err != nil {
			t.Fatal(err)
		}
		if len(at) != 10 {
			t.Fatalf("%d probes, want 10", len(at))
		}
		want := 50 * time.Millisecond
		for i := 1; i < len(at); i++ {
			gap := at[i] - at[i-1]
			lo, hi := time.Duration(float64(want)*0.8), time.Duration(float64(want)*1.2)+time.Millisecond
			if gap < lo || gap > hi {
				t.Errorf("gap %d = %v, want within [%v, %v]", i, gap, lo, hi)
			}
			want = min(2*want, time.Second)
		}
	})
}

func TestWaitReadyDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		probes := 0
		probe := func(context.Context) (int, error) {
			probes++
			if probes%2 == 0 {
				return 0, errors.New("dial tcp: connection refused")
			}
			return http.StatusServiceUnavailable, nil
		}
		start := time.Now()
		err := waitReady(ctx, "127.0.0.1:15021", newWaitBackoff(), probe)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if time.Since(start) != 5*time.Second {
			t.Errorf("returned after %v, want exactly the 5s deadline", time.Since(start))
		}
		// 50+100+200+400+800 ms, then about 1 s each: about 9 probes in 5 s.
		if probes < 7 || probes > 11 {
			t.Errorf("%d probes in 5s", probes)
		}
		last := "HTTP 503"
		if probes%2 == 0 {
			last = "connection refused"
		}
		if !strings.Contains(err.Error(), "last probe: ") || !strings.Contains(err.Error(), last) {
			t.Errorf("err %q does not say what the last probe (%d) saw", err, probes)
		}
	})
}

func TestParseAnnotations(t *testing.T) {
	t.Parallel()
	got := parseAnnotations([]byte("a=\"1\"\nb=\"x\\\"y\\n\"\n\nnoequals\n=\"nokey\"\nc=raw value\n  d = \"spaced\"  \n"))
	want := map[string]string{"a": "1", "b": "x\"y\n", "c": "raw value", "d": "spaced"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseAnnotations = %v, want %v", got, want)
	}
}

func FuzzParseAnnotations(f *testing.F) {
	f.Add("sidecar.istio.io/status", `{"revision":"default"}`, []byte("x=\"y\"\n"))
	f.Add("ambient.istio.io/redirection", "enabled", []byte("garbage\n=\n\"\"\n"))
	f.Add("k", "line\nbreak\t\"quoted\"", []byte{0xff, '=', '"', '\\'})
	f.Fuzz(func(t *testing.T, key, value string, junk []byte) {
		if len(junk) > 64<<10 {
			return
		}
		// Arbitrary input never panics.
		parseAnnotations(junk)
		parseSidecarStatus(string(junk))
		// A well-formed line (as the downward API writes it) round-trips.
		if key == "" || strings.ContainsAny(key, "=\n\r") || strings.TrimSpace(key) != key {
			return
		}
		line := key + "=" + strconv.Quote(value) + "\n"
		m := parseAnnotations(append(junk[:len(junk):len(junk)], append([]byte("\n"), line...)...))
		if m[key] != value {
			t.Fatalf("round trip of %q=%q gave %q", key, value, m[key])
		}
	})
}
