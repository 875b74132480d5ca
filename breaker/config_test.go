package breaker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

func TestNewValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    breaker.Config
		want string // "" = valid
	}{
		{"zero value", breaker.Config{}, ""},
		{"all set", breaker.Config{WindowType: breaker.WindowTime, WindowSize: 60, MinimumCalls: 10,
			FailureRate: 25, SlowCallRate: 80, SlowCallDuration: time.Second, OpenDuration: time.Minute,
			HalfOpenCalls: 1, MaxAttempts: 5, Backoff: breaker.Backoff{Initial: time.Second, Max: time.Second, Multiplier: 1},
			MaxRetryAfter: time.Second, BudgetPercent: 100, MinRetryConcurrency: 1, MinTryTime: time.Millisecond,
			Timeout: time.Hour, PerTryTimeout: time.Minute}, ""},
		{"no timeouts", breaker.Config{Timeout: breaker.NoTimeout, PerTryTimeout: breaker.NoTimeout}, ""},
		{"window type", breaker.Config{WindowType: 7}, "breaker: WindowType 7 is not WindowCount or WindowTime"},
		{"window size negative", breaker.Config{WindowSize: -1}, "breaker: WindowSize -1 out of range [1,1048576] (0 means 20)"},
		{"window size huge", breaker.Config{WindowSize: 1 << 21}, "breaker: WindowSize 2097152 out of range"},
		{"minimum calls", breaker.Config{MinimumCalls: -5}, "breaker: MinimumCalls -5 out of range"},
		{"failure rate high", breaker.Config{FailureRate: 150}, "breaker: FailureRate 150 out of range (0,100]"},
		{"failure rate negative", breaker.Config{FailureRate: -1}, "breaker: FailureRate -1 out of range (0,100]"},
		{"slow call rate", breaker.Config{SlowCallRate: 100.5}, "breaker: SlowCallRate 100.5 out of range (0,100]"},
		{"slow call duration", breaker.Config{SlowCallDuration: -time.Second}, "breaker: SlowCallDuration -1s is negative"},
		{"open duration", breaker.Config{OpenDuration: -time.Second}, "breaker: OpenDuration -1s is negative"},
		{"half-open calls", breaker.Config{HalfOpenCalls: -1}, "breaker: HalfOpenCalls -1 out of range [1,1048576] (0 means 3)"},
		{"max attempts", breaker.Config{MaxAttempts: -2}, "breaker: MaxAttempts -2 out of range"},
		{"backoff initial", breaker.Config{Backoff: breaker.Backoff{Initial: -1}}, "breaker: Backoff.Initial -1ns is negative"},
		{"backoff max", breaker.Config{Backoff: breaker.Backoff{Max: -1}}, "breaker: Backoff.Max -1ns is negative"},
		{"backoff default max follows initial", breaker.Config{Backoff: breaker.Backoff{Initial: time.Minute}}, ""},
		{"backoff max below initial", breaker.Config{Backoff: breaker.Backoff{Initial: time.Minute, Max: time.Second}}, "breaker: Backoff.Max 1s is below Backoff.Initial 1m0s"},
		{"backoff multiplier", breaker.Config{Backoff: breaker.Backoff{Multiplier: 0.5}}, "breaker: Backoff.Multiplier 0.5 out of range [1,+Inf)"},
		{"max retry-after", breaker.Config{MaxRetryAfter: -time.Second}, "breaker: MaxRetryAfter -1s is negative"},
		{"budget percent", breaker.Config{BudgetPercent: 101}, "breaker: BudgetPercent 101 out of range (0,100]"},
		{"min retry concurrency", breaker.Config{MinRetryConcurrency: -1}, "breaker: MinRetryConcurrency -1 out of range"},
		{"min try time", breaker.Config{MinTryTime: -time.Millisecond}, "breaker: MinTryTime -1ms is negative"},
		{"timeout", breaker.Config{Timeout: -time.Second}, "breaker: Timeout -1s is negative (use NoTimeout to switch it off)"},
		{"per-try timeout", breaker.Config{PerTryTimeout: -2}, "breaker: PerTryTimeout -2ns is negative (use NoTimeout to switch it off)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := breaker.New(tt.c)
			if tt.want == "" {
				if err != nil || p == nil {
					t.Fatalf("New: %v", err)
				}
				if p.State() != breaker.StateClosed {
					t.Errorf("new policy is %v, want closed", p.State())
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want error %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %q, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestStringers(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ got, want string }{
		{breaker.StateClosed.String(), "closed"},
		{breaker.StateHalfOpen.String(), "half-open"},
		{breaker.StateOpen.String(), "open"},
		{breaker.State(9).String(), "State(9)"},
		{breaker.OutcomeSuccess.String(), "success"},
		{breaker.OutcomeFailure.String(), "failure"},
		{breaker.OutcomeExcluded.String(), "excluded"},
		{breaker.Outcome(5).String(), "Outcome(5)"},
		{breaker.WindowCount.String(), "count"},
		{breaker.WindowTime.String(), "time"},
		{breaker.WindowType(3).String(), "WindowType(3)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
