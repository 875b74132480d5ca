package steer_test

import (
	"fmt"
	"time"

	"github.com/infermesh/infermesh/steer"
)

// A canary: the new model version takes 10% of the calls, then 30%. The split
// is a smooth weighted round-robin, so the counts are exact.
func Example() {
	r, err := steer.New(steer.Config{Backends: []steer.Backend{
		{Name: "gpt-v1", Weight: 90},
		{Name: "gpt-v2", Weight: 10},
	}})
	if err != nil {
		panic(err)
	}
	split := func() map[string]int {
		n := map[string]int{}
		for range 100 {
			c, done, err := r.Pick(steer.Request{})
			if err != nil {
				panic(err)
			}
			n[c.Backend]++
			done() // when the call has ended
		}
		return n
	}
	fmt.Println(split())
	if err := r.SetWeights(map[string]int{"gpt-v1": 70, "gpt-v2": 30}); err != nil {
		panic(err)
	}
	fmt.Println(split())
	// Output:
	// map[gpt-v1:90 gpt-v2:10]
	// map[gpt-v1:70 gpt-v2:30]
}

// Internal testers, who send x-canary-user: true, are pinned to the new
// version, which takes no other traffic yet (weight 0).
func ExampleRule() {
	r, _ := steer.New(steer.Config{
		Backends: []steer.Backend{{Name: "openai", Weight: 100}, {Name: "azure", Weight: 0}},
		Rules:    []steer.Rule{{Header: "x-canary-user", Exact: "true", Backend: "azure"}},
	})
	tester := map[string]string{"x-canary-user": "true"}
	c, done, _ := r.Pick(steer.Request{Header: func(name string) string { return tester[name] }})
	defer done()
	fmt.Println(c.Backend, c.Reason)
	c2, done2, _ := r.Pick(steer.Request{})
	defer done2()
	fmt.Println(c2.Backend, c2.Reason)
	// Output:
	// azure rule
	// openai weighted
}

// A conversation stays on the replica that holds its state, call after call;
// when that replica is unhealthy, the conversation moves, and it comes back
// when the replica recovers.
func ExampleRouter_Pick_session() {
	r, _ := steer.New(steer.Config{Backends: []steer.Backend{
		{Name: "vllm-0", Weight: 1}, {Name: "vllm-1", Weight: 1}, {Name: "vllm-2", Weight: 1},
	}})
	down := ""
	req := steer.Request{
		Header: func(name string) string {
			if name == "x-session-id" {
				return "conversation-42"
			}
			return ""
		},
		Healthy: func(backend string) bool { return backend != down },
	}
	call := func() string {
		c, done, err := r.Pick(req)
		if err != nil {
			panic(err)
		}
		defer done()
		return c.Backend + " (" + string(c.Reason) + ")"
	}
	fmt.Println(call(), call())
	down = "vllm-0"
	fmt.Println(call())
	down = ""
	fmt.Println(call())
	// Output:
	// vllm-0 (affinity) vllm-0 (affinity)
	// vllm-2 (affinity)
	// vllm-0 (affinity)
}

// A hedge waits for the p95 of the backend's recent times to first chunk.
func ExampleHedger() {
	h, err := steer.NewHedger(steer.HedgeConfig{})
	if err != nil {
		panic(err)
	}
	fmt.Println(h.Delay("azure")) // no samples yet: MaxDelay
	for i := 1; i <= 100; i++ {
		h.Observe("azure", time.Duration(i)*10*time.Millisecond) // 10ms .. 1s
	}
	fmt.Println(h.Delay("azure"))
	// Output:
	// 10s
	// 950ms
}
