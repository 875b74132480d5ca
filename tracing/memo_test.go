package tracing

import (
	"sync"
	"testing"
)

func TestMemoBounded(t *testing.T) {
	t.Parallel()
	var m memo[int, string]
	if _, ok := m.load(1); ok {
		t.Fatal("empty memo found a value")
	}
	if got := m.store(1, "a", 2); got != "a" {
		t.Fatalf("store kept %q", got)
	}
	if got := m.store(1, "b", 2); got != "a" {
		t.Fatalf("second store of a key returned %q, want the kept a", got)
	}
	m.store(2, "c", 2)
	if got := m.store(3, "d", 2); got != "d" {
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
		wg.Go(func() { got[i] = m.store("k", new(int), 10) })
	}
	wg.Wait()
	for _, p := range got {
		if p != got[0] {
			t.Fatal("concurrent stores of one key returned different values")
		}
	}
}
