package tracing

import (
	"fmt"
	"sync"
	"testing"
)

func TestMemoBounded(t *testing.T) {
	t.Parallel()
	var m memo[int, string]
	if _, ok := m.load(1); ok {
		t.Fatal("empty memo found a value")
	}
	if got := m.store(1, "a", 2, nil); got != "a" {
		t.Fatalf("store kept %q", got)
	}
	if got := m.store(1, "b", 2, nil); got != "a" {
		t.Fatalf("second store of a key returned %q, want the kept a", got)
	}
	m.store(2, "c", 2, nil)
	if got := m.store(3, "d", 2, nil); got != "d" {
		t.Fatalf("store past the limit returned %q", got)
	}
	if _, ok := m.load(3); ok {
		t.Fatal("a full memo kept a new key")
	}
	if v, ok := m.load(2); !ok || v != "c" {
		t.Fatalf("load(2) = %q, %v", v, ok)
	}
}

func TestMemoConcurrentStoresShareOneValue(t *testing.T) {
	t.Parallel()
	var m memo[string, *int]
	var wg sync.WaitGroup
	got := make([]*int, 8)
	for i := range got {
		wg.Go(func() { got[i] = m.store("k", new(int), 10, nil) })
	}
	wg.Wait()
	for _, p := range got {
		if p != got[0] {
			t.Fatal("concurrent stores of one key returned different values")
		}
	}
}

// The attribute sets kept by all of an Instrumenter's series stay within
// maxSets, however many shapes, response models and error types calls bring;
// past it, calls build their own and record the same attributes.
func TestMetricSetsBounded(t *testing.T) {
	t.Parallel()
	var in Instrumenter
	for i := range 300 {
		sh := in.shape(shapeKey{op: "chat", provider: "openai", model: fmt.Sprint("m", i), addr: "h", port: 443})
		for j := range maxSeries {
			s := sh.seriesOf(fmt.Sprint("r", j))
			for k := range 3 {
				if o := s.failedDur(fmt.Sprint("e", k)); len(o) != 1 {
					t.Fatalf("failedDur returned %d options", len(o))
				}
			}
			if len(s.plain) != 1 || len(s.tokIn) != 1 || len(s.tokOut) != 1 {
				t.Fatal("a series past the bound lacks its record options")
			}
		}
	}
	if n := in.sets.Load(); n > maxSets || n < maxSets-6 {
		t.Fatalf("kept %d attribute sets, want at most %d and close to it", n, maxSets)
	}
}
