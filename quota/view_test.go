package quota_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/quota"
)

func TestRemainingAndMode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, quota.Config{Limits: map[string]quota.Limits{"a": {RequestsPerMinute: 60, TokensPerMinute: 6000}}})
		if l.Mode() != quota.Local || l.Mode().String() != "local" {
			t.Fatalf("mode %v without Redis, want local", l.Mode())
		}
		remaining := func(key string, wantReq, wantTok int) {
			t.Helper()
			if req, tok := l.Remaining(key); req != wantReq || tok != wantTok {
				t.Fatalf("Remaining(%q) = %d requests, %d tokens; want %d, %d", key, req, tok, wantReq, wantTok)
			}
		}
		remaining("a", 60, 6000)
		remaining("unknown", -1, -1)
		r := mustAdmit(t, l, "a", 1000, 0)
		if r.Shared() {
			t.Error("a local admission says it was shared")
		}
		remaining("a", 59, 5000)
		r.Settle(400)
		remaining("a", 59, 5600)
		time.Sleep(time.Second) // one request and 100 tokens refill per second
		remaining("a", 60, 5700)
		l.Observe("b", http.Header{"Retry-After": {"2"}}, http.StatusTooManyRequests)
		remaining("b", 0, 0)
		time.Sleep(2 * time.Second)
		remaining("b", -1, -1)
	})
}

func TestSharedRemainingAndMode(t *testing.T) {
	srv := startRedis(t)
	cfg := quota.Config{Limits: map[string]quota.Limits{"k": {RequestsPerMinute: 6000, TokensPerMinute: 600000}}, MaxWait: quota.NoWait}
	a, b := sharedLimiter(t, srv, cfg), sharedLimiter(t, srv, cfg)
	ctx := context.Background()
	if a.Mode() != quota.Shared {
		t.Fatalf("mode %v with Redis up, want shared", a.Mode())
	}
	for range 10 {
		r, err := a.Reserve(ctx, "k", 1000)
		if err != nil || !r.Shared() {
			t.Fatalf("Reserve: %v, shared %v", err, r != nil && r.Shared())
		}
	}
	r, err := b.Reserve(ctx, "k", 1000)
	if err != nil {
		t.Fatal(err)
	}
	// b's view is what the shared quota held after its admission: 11 calls of 6000 (plus a
	// refill of 100 per second since, on a slow machine).
	req, tok := b.Remaining("k")
	if req < 6000-11 || req > 6000-11+50 || tok < 600000-11000 || tok > 600000-11000+5000 {
		t.Fatalf("b's Remaining = %d requests, %d tokens; want about 5989 and 589000", req, tok)
	}
	r.Settle(100)
	srv.Kill()
	if _, err := a.Reserve(ctx, "k", 1); err != nil {
		t.Fatalf("Reserve with Redis down: %v", err)
	}
	if a.Mode() != quota.Degraded || a.Mode().String() != "degraded" {
		t.Fatalf("mode %v with Redis down, want degraded", a.Mode())
	}
}

// TestHeadroom: a call that must wait for a bucket to refill waits Headroom more, so that
// a saturated key is admitted Headroom after the limit's own schedule, at the same rate; a
// call that finds room is never delayed, and the last request of a burst is not refused.
func TestHeadroom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, quota.Config{Limits: map[string]quota.Limits{"a": {RequestsPerMinute: 60}}})
		for range 60 {
			mustAdmit(t, l, "a", 0, 0)
		}
		// Each further request waits for one second's refill and the default headroom; the
		// rate stays one per second.
		mustAdmit(t, l, "a", 0, time.Second+quota.DefaultHeadroom)
		mustAdmit(t, l, "a", 0, time.Second)
		mustAdmit(t, l, "a", 0, time.Second)
		time.Sleep(time.Minute) // full again
		mustAdmit(t, l, "a", 0, 0)

		short := newLimiter(t, quota.Config{Limits: map[string]quota.Limits{"a": {RequestsPerMinute: 60}}, Headroom: 10 * time.Millisecond, MaxWait: quota.NoWait})
		for range 60 {
			mustAdmit(t, short, "a", 0, 0)
		}
		mustRefuse(t, short, context.Background(), "a", 0, quota.Requests, time.Second+10*time.Millisecond)
		if _, err := quota.New(quota.Config{Headroom: -2}); err == nil || !strings.Contains(err.Error(), "Config.Headroom") {
			t.Errorf("Headroom -2: %v, want an error naming Config.Headroom", err)
		}
	})
}
