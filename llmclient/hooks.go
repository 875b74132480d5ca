package llmclient

import (
	"context"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/tracing"
)

// hooks joins tracing's recording, Config.Hooks and the route's own hooks into the
// hooks of one breaker policy.
func (t *Transport) hooks(route breaker.Hooks) breaker.Hooks {
	user := [2]breaker.Hooks{t.cfg.Hooks, route}
	return breaker.Hooks{
		OnStateChange: func(name string, from, to breaker.State) {
			t.inst.BreakerTransition(name, from.String(), to.String())
			for _, h := range user {
				if h.OnStateChange != nil {
					h.OnStateChange(name, from, to)
				}
			}
		},
		OnRetry: func(ctx context.Context, e breaker.RetryEvent) {
			tracing.CallFromContext(ctx).Retry(e.Attempt, e.Wait, string(e.Verdict.Class))
			for _, h := range user {
				if h.OnRetry != nil {
					h.OnRetry(ctx, e)
				}
			}
		},
		OnBudgetRejected: func(ctx context.Context, e breaker.RetryEvent) {
			tracing.CallFromContext(ctx).BudgetRejected(e.Attempt, string(e.Verdict.Class))
			for _, h := range user {
				if h.OnBudgetRejected != nil {
					h.OnBudgetRejected(ctx, e)
				}
			}
		},
	}
}
