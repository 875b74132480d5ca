package steer_test

import (
	"math"
	"testing"
	"time"

	"github.com/infermesh/infermesh/steer"
)

func TestNewErrors(t *testing.T) {
	t.Parallel()
	two := backends("v1", 90, "v2", 10)
	many := make([]steer.Backend, steer.MaxBackends+1)
	for i := range many {
		many[i] = steer.Backend{Name: sessionID(i), Weight: 1}
	}
	tests := []struct {
		name string
		cfg  steer.Config
		want string
	}{
		{"no backends", steer.Config{}, `steer: Backends is empty`},
		{"too many", steer.Config{Backends: many}, `steer: Backends has 65 backends, more than MaxBackends (64)`},
		{"empty name", steer.Config{Backends: backends("v1", 1, "", 1)}, `steer: Backends[1].Name "" is empty`},
		{"duplicate", steer.Config{Backends: backends("v1", 1, "v2", 1, "v1", 1)}, `steer: Backends[2].Name "v1" repeats Backends[0].Name`},
		{"negative weight", steer.Config{Backends: backends("v1", 1, "v2", -1)}, `steer: Backends[1].Weight -1 is out of range [0,1000000]`},
		{"huge weight", steer.Config{Backends: backends("v1", steer.MaxWeight+1)}, `steer: Backends[0].Weight 1000001 is out of range [0,1000000]`},
		{"all zero", steer.Config{Backends: backends("v1", 0, "v2", 0)}, `steer: every backend would have weight 0; at least one needs a positive weight`},
		{"rule backend", steer.Config{Backends: two, Rules: []steer.Rule{
			{Header: "x-canary-user", Exact: "true", Backend: "v2"},
			{Header: "x-canary-user", Exact: "v3", Backend: "v3"},
		}}, `steer: Rules[1].Backend "v3" is not a backend`},
		{"rule header", steer.Config{Backends: two, Rules: []steer.Rule{{Exact: "true", Backend: "v2"}}}, `steer: Rules[0].Header is empty`},
		{"rule no match", steer.Config{Backends: two, Rules: []steer.Rule{{Header: "h", Backend: "v2"}}}, `steer: Rules[0] sets neither Exact nor Prefix`},
		{"rule both", steer.Config{Backends: two, Rules: []steer.Rule{{Header: "h", Exact: "a", Prefix: "b", Backend: "v2"}}}, `steer: Rules[0] sets both Exact "a" and Prefix "b"`},
		{"balance", steer.Config{Backends: two, Balance: 7}, `steer: Balance 7 is not Weighted or LeastLoaded`},
		{"load factor low", steer.Config{Backends: two, LoadFactor: 0.5}, `steer: LoadFactor 0.5 is not a finite number of at least 1 (0 means 1.25)`},
		{"load factor NaN", steer.Config{Backends: two, LoadFactor: math.NaN()}, `steer: LoadFactor NaN is not a finite number of at least 1 (0 means 1.25)`},
		{"load factor Inf", steer.Config{Backends: two, LoadFactor: math.Inf(1)}, `steer: LoadFactor +Inf is not a finite number of at least 1 (0 means 1.25)`},
		{"min healthy negative", steer.Config{Backends: two, MinHealthyPercent: -1}, `steer: MinHealthyPercent -1 is out of range [0,100]`},
		{"min healthy high", steer.Config{Backends: two, MinHealthyPercent: 101}, `steer: MinHealthyPercent 101 is out of range [0,100]`},
		{"min healthy NaN", steer.Config{Backends: two, MinHealthyPercent: math.NaN()}, `steer: MinHealthyPercent NaN is out of range [0,100]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := steer.New(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("New error = %v, want %s", err, tt.want)
			}
			if r != nil {
				t.Errorf("New returned a Router with an error")
			}
		})
	}
}

func TestNewValid(t *testing.T) {
	t.Parallel()
	for _, cfg := range []steer.Config{
		{Backends: backends("only", 1)},
		{Backends: backends("v1", steer.MaxWeight, "v2", 0), LoadFactor: 1, MinHealthyPercent: 100},
		{Backends: backends("v1", 1), AffinityHeader: steer.NoAffinity, Balance: steer.LeastLoaded},
	} {
		if _, err := steer.New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

func TestSetWeightsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		weights map[string]int
		want    string
	}{
		{map[string]int{"v1": 50, "v3": 50}, `steer: SetWeights "v3" is not a backend`},
		{map[string]int{"v2": -5}, `steer: SetWeights["v2"] -5 is out of range [0,1000000]`},
		{map[string]int{"v1": 0, "v2": 0}, `steer: every backend would have weight 0; at least one needs a positive weight`},
	}
	for _, tt := range tests {
		r := mustNew(t, steer.Config{Backends: backends("v1", 90, "v2", 10)})
		if err := r.SetWeights(tt.weights); err == nil || err.Error() != tt.want {
			t.Errorf("SetWeights(%v) = %v, want %s", tt.weights, err, tt.want)
		}
		if w := r.Weights(); w["v1"] != 90 || w["v2"] != 10 {
			t.Errorf("after the failed SetWeights(%v): Weights() = %v, want unchanged", tt.weights, w)
		}
	}
}

func TestBalanceString(t *testing.T) {
	t.Parallel()
	for b, want := range map[steer.Balance]string{steer.Weighted: "weighted", steer.LeastLoaded: "least-loaded", 9: "Balance(9)"} {
		if got := b.String(); got != want {
			t.Errorf("Balance(%d).String() = %q, want %q", int(b), got, want)
		}
	}
}

func TestNewHedgerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg  steer.HedgeConfig
		want string
	}{
		{steer.HedgeConfig{Quantile: 1.5}, `steer: HedgeConfig.Quantile 1.5 is out of range (0,1]`},
		{steer.HedgeConfig{Quantile: -0.5}, `steer: HedgeConfig.Quantile -0.5 is out of range (0,1]`},
		{steer.HedgeConfig{Quantile: math.NaN()}, `steer: HedgeConfig.Quantile NaN is out of range (0,1]`},
		{steer.HedgeConfig{Window: -1}, `steer: HedgeConfig.Window -1 is out of range [1,65536]`},
		{steer.HedgeConfig{Window: 1 << 20}, `steer: HedgeConfig.Window 1048576 is out of range [1,65536]`},
		{steer.HedgeConfig{MinSamples: -3}, `steer: HedgeConfig.MinSamples -3 is negative`},
		{steer.HedgeConfig{MinDelay: -time.Second}, `steer: HedgeConfig.MinDelay -1s is negative`},
		{steer.HedgeConfig{MaxDelay: -time.Second}, `steer: HedgeConfig.MaxDelay -1s is negative`},
		{steer.HedgeConfig{MinDelay: 2 * time.Second, MaxDelay: time.Second}, `steer: HedgeConfig.MaxDelay 1s is below HedgeConfig.MinDelay 2s`},
	}
	for _, tt := range tests {
		h, err := steer.NewHedger(tt.cfg)
		if err == nil || err.Error() != tt.want {
			t.Errorf("NewHedger(%+v) = %v, want %s", tt.cfg, err, tt.want)
		}
		if h != nil {
			t.Errorf("NewHedger(%+v) returned a Hedger with an error", tt.cfg)
		}
	}
}
