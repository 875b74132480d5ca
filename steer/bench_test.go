package steer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/infermesh/infermesh/steer"
)

// BenchmarkPick measures one Pick and its done, as llmclient makes them: a
// Healthy function, a header lookup, three backends.
func BenchmarkPick(b *testing.B) {
	healthy := func(string) bool { return true }
	noHeader := func(string) string { return "" }
	sessionHeader := func(name string) string {
		if name == steer.DefaultAffinityHeader {
			return "0b9c6a2e-4f7e-4b8e-9d3c-51c1b6a0f9e2"
		}
		return ""
	}
	canary := func(name string) string {
		if name == "x-canary-user" {
			return "true"
		}
		return ""
	}
	rules := []steer.Rule{{Header: "x-canary-user", Exact: "true", Backend: "c"}}
	for _, bc := range []struct {
		name    string
		balance steer.Balance
		header  func(string) string
	}{
		{"weighted", steer.Weighted, noHeader},
		{"least-loaded", steer.LeastLoaded, noHeader},
		{"affinity", steer.Weighted, sessionHeader},
		{"rule", steer.Weighted, canary},
	} {
		r := mustNew(b, steer.Config{Backends: backends("a", 70, "b", 30, "c", 0), Rules: rules, Balance: bc.balance})
		req := steer.Request{Header: bc.header, Healthy: healthy}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, done, err := r.Pick(req)
				if err != nil {
					b.Fatal(err)
				}
				done()
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, done, err := r.Pick(req)
					if err != nil {
						b.Error(err)
						return
					}
					done()
				}
			})
		})
	}
}

// BenchmarkPickAffinityBackends shows how a session pick grows with the
// number of backends (the ring has 160 points per backend).
func BenchmarkPickAffinityBackends(b *testing.B) {
	for _, n := range []int{2, 8, 64} {
		var bs []steer.Backend
		for i := range n {
			bs = append(bs, steer.Backend{Name: fmt.Sprintf("replica-%d", i), Weight: 1})
		}
		r := mustNew(b, steer.Config{Backends: bs})
		req := session("0b9c6a2e-4f7e-4b8e-9d3c-51c1b6a0f9e2")
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, done, _ := r.Pick(req)
				done()
			}
		})
	}
}

func BenchmarkHedger(b *testing.B) {
	h := mustHedger(b, steer.HedgeConfig{})
	for i := range steer.DefaultHedgeWindow {
		h.Observe("azure", time.Duration(i)*time.Millisecond)
	}
	b.Run("Observe", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			h.Observe("azure", time.Duration(i%1000)*time.Millisecond)
		}
	})
	b.Run("Delay", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if h.Delay("azure") <= 0 {
				b.Fatal("no delay")
			}
		}
	})
	b.Run("Observe/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				h.Observe("azure", time.Duration(i%1000)*time.Millisecond)
			}
		})
	})
}
