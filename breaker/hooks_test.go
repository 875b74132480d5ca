package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/breaker"
)

type transition struct {
	name     string
	from, to breaker.State
	seen     breaker.State // what State() returned inside the hook
}

func TestStateChangeHookMayCallState(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var (
			p   *breaker.Policy
			got []transition
		)
		p = mustNew(t, breakerOnly(breaker.Config{
			Name: "upstream", MinimumCalls: 1, OpenDuration: time.Second, HalfOpenCalls: 1,
			Hooks: breaker.Hooks{OnStateChange: func(name string, from, to breaker.State) {
				got = append(got, transition{name, from, to, p.State()}) // no deadlock
			}},
		}))
		calls(t, p, errBoom)
		time.Sleep(time.Second)
		calls(t, p, nil)
		want := []transition{
			{"upstream", breaker.StateClosed, breaker.StateOpen, breaker.StateOpen},
			{"upstream", breaker.StateOpen, breaker.StateHalfOpen, breaker.StateHalfOpen},
			{"upstream", breaker.StateHalfOpen, breaker.StateClosed, breaker.StateClosed},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("transitions\n got %v\nwant %v", got, want)
		}
	})
}

// A hook may even run calls through the policy it observes.
func TestStateChangeHookMayCallDo(t *testing.T) {
	t.Parallel()
	var p *breaker.Policy
	var inner error
	p = mustNew(t, breakerOnly(breaker.Config{
		MinimumCalls: 1,
		Hooks: breaker.Hooks{OnStateChange: func(_ string, _, to breaker.State) {
			if to == breaker.StateOpen {
				_, inner = call(p, 0, nil)
			}
		}},
	}))
	calls(t, p, errBoom)
	if !errors.Is(inner, breaker.ErrOpen) {
		t.Errorf("Do inside the hook: %v, want ErrOpen", inner)
	}
}

// Under concurrency, transitions are reported one at a time and in order: each
// one starts where the previous ended.
func TestStateChangesInOrderUnderConcurrency(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		events []transition
		busy   bool
	)
	p := mustNew(t, breakerOnly(breaker.Config{
		MinimumCalls: 2, WindowSize: 4, OpenDuration: 200 * time.Microsecond, HalfOpenCalls: 2,
		Hooks: breaker.Hooks{OnStateChange: func(_ string, from, to breaker.State) {
			mu.Lock()
			if busy {
				t.Error("hooks overlap")
			}
			busy = true
			events = append(events, transition{from: from, to: to})
			mu.Unlock()
			time.Sleep(time.Microsecond)
			mu.Lock()
			busy = false
			mu.Unlock()
		}},
	}))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				var err error
				if (w*7+i)%3 != 0 {
					err = errBoom
				}
				call(p, 0, err)
				if i%50 == 0 {
					time.Sleep(300 * time.Microsecond)
				}
			}
		})
	}
	wg.Wait()
	p.State() // flush
	mu.Lock()
	defer mu.Unlock()
	if len(events) < 3 {
		t.Fatalf("only %d transitions", len(events))
	}
	prev := breaker.StateClosed
	for i, e := range events {
		if e.from != prev || e.from == e.to {
			t.Fatalf("transition %d is %v -> %v after one to %v", i, e.from, e.to, prev)
		}
		prev = e.to
	}
}

type ctxKey struct{}

func TestOnRetryGetsCallerCtx(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var got []any
		var events []breaker.RetryEvent
		p := mustNew(t, breaker.Config{MaxAttempts: 3, Hooks: breaker.Hooks{OnRetry: func(ctx context.Context, e breaker.RetryEvent) {
			got = append(got, ctx.Value(ctxKey{}))
			events = append(events, e)
		}}})
		ctx := context.WithValue(context.Background(), ctxKey{}, "span")
		attempts(ctx, p, errBoom, errBoom)
		if fmt.Sprint(got) != "[span span]" {
			t.Errorf("hook ctx values %v", got)
		}
		for i, e := range events {
			if e.Attempt != i+1 || !errors.Is(e.Err, errBoom) || e.Verdict.Class != breaker.ClassUnknown {
				t.Errorf("event %d: %+v", i, e)
			}
		}
	})
}
