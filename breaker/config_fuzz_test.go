package breaker_test

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

// FuzzConfig feeds arbitrary values to every numeric Config field: New either returns
// an error that names one of the fields, or a policy whose Do runs a call.
func FuzzConfig(f *testing.F) {
	f.Add(int8(0), 0, 0, 0.0, 0.0, int64(0), int64(0), 0, 0, int64(0), int64(0), 0.0, int64(0), 0.0, 0, int64(0), int64(0), int64(0))
	f.Add(int8(1), 20, 5, 50.0, 100.0, int64(time.Minute), int64(30*time.Second), 3, 2, int64(time.Second), int64(time.Minute), 2.0, int64(time.Minute), 20.0, 3, int64(time.Second), int64(time.Minute), int64(time.Second))
	f.Add(int8(7), -1, -5, 150.0, math.NaN(), int64(-1), int64(-7), -3, -1, int64(-1), int64(-1), math.Inf(1), int64(-1), -5.0, -2, int64(-3), int64(-2), int64(-2))
	f.Fuzz(func(t *testing.T, wt int8, ws, minCalls int, fr, sr float64, slow, open int64, half, attempts int,
		boInit, boMax int64, boMult float64, maxRA int64, budget float64, minConc int, minTry, timeout, perTry int64) {
		cfg := breaker.Config{
			WindowType: breaker.WindowType(wt), WindowSize: ws, MinimumCalls: minCalls,
			FailureRate: fr, SlowCallRate: sr, SlowCallDuration: time.Duration(slow), OpenDuration: time.Duration(open),
			HalfOpenCalls: half, MaxAttempts: attempts,
			Backoff:       breaker.Backoff{Initial: time.Duration(boInit), Max: time.Duration(boMax), Multiplier: boMult},
			MaxRetryAfter: time.Duration(maxRA), BudgetPercent: budget, MinRetryConcurrency: minConc,
			MinTryTime: time.Duration(minTry), Timeout: time.Duration(timeout), PerTryTimeout: time.Duration(perTry),
		}
		p, err := breaker.New(cfg)
		if err != nil {
			msg := err.Error()
			named := false
			ct := reflect.TypeOf(cfg)
			for i := range ct.NumField() {
				if strings.Contains(msg, ct.Field(i).Name) {
					named = true
				}
			}
			if !strings.HasPrefix(msg, "breaker: ") || !named {
				t.Fatalf("error %q does not name a Config field", msg)
			}
			return
		}
		if cfg.Timeout > 0 && cfg.Timeout < time.Millisecond || cfg.PerTryTimeout > 0 && cfg.PerTryTimeout < time.Millisecond {
			return // a valid but too short limit for a real-time call
		}
		v, err := breaker.Do(context.Background(), p, func(context.Context) (int, error) { return 7, nil })
		if err != nil || v != 7 {
			t.Fatalf("a valid policy failed a no-op call: %v %v (config %+v)", v, err, cfg)
		}
	})
}
