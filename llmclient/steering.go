package llmclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/steer"
)

// errHedgeLost ends the run that lost a hedge race.
var errHedgeLost = errors.New("llmclient: another backend answered first")

// pick chooses the backend of a call (not one of exclude) and builds its target. The
// backend counts the call in flight until the call ends.
func (c *call) pick(exclude []string) (*target, error) {
	st := c.t.steering
	ch, done, err := st.router.Pick(steer.Request{Header: c.req.Header.Get, Healthy: c.healthy, Exclude: exclude})
	if err != nil {
		// Every backend's breaker is open: the call is refused as an open breaker
		// would refuse it, and a fallback may serve it.
		return nil, &breaker.Error{Reason: breaker.ErrOpen, Last: fmt.Errorf("llmclient: %w", err)}
	}
	c.release = append(c.release, done)
	c.obs.Backend(ch.Backend)
	return c.backendTarget(st.backends[ch.Backend]), nil
}

// healthy reports whether a backend can take a call of this route: its breaker is not
// open, and it has quota.
func (c *call) healthy(name string) bool {
	if p := c.t.policies.get(c.routeIx, name); p != nil && p.State() == breaker.StateOpen {
		return false
	}
	return c.t.cfg.Quota == nil || c.t.cfg.Quota.Available(name)
}

// hedging is a route's Hedge: the times to first chunk per backend, and the budget of
// hedges in flight.
type hedging struct {
	hedger  *steer.Hedger
	percent float64
	floor   int64
	calls   atomic.Int64 // hedged-route calls in flight
	extra   atomic.Int64 // hedges in flight
}

func newHedges(routes []Route, st *steering) ([]*hedging, error) {
	hs := make([]*hedging, len(routes))
	for i, rt := range routes {
		if rt.Hedge == nil {
			continue
		}
		if st == nil || len(st.backends) < 2 {
			return nil, fmt.Errorf("llmclient: route %q: Hedge needs Steering with at least two backends", rt.Name)
		}
		h, err := steer.NewHedger(steer.HedgeConfig{Quantile: rt.Hedge.Quantile, MinDelay: rt.Hedge.MinDelay, MaxDelay: rt.Hedge.MaxDelay})
		if err != nil {
			return nil, fmt.Errorf("llmclient: route %q: Hedge: %w", rt.Name, err)
		}
		hs[i] = &hedging{hedger: h, percent: orDefaultF(rt.Policy.BudgetPercent, breaker.DefaultBudgetPercent),
			floor: int64(orDefault(rt.Policy.MinRetryConcurrency, breaker.DefaultMinRetryConcurrency))}
	}
	return hs, nil
}

func orDefaultF(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

// takeExtra reserves room for one hedge in the route's budget: at most its
// BudgetPercent of the calls in flight, with its MinRetryConcurrency floor, as for
// retries.
func (h *hedging) takeExtra() bool {
	allowed := max(int64(h.percent*float64(h.calls.Load())/100), h.floor)
	if h.extra.Add(1) > allowed {
		h.extra.Add(-1)
		return false
	}
	return true
}

// result is how one run of a hedged call ended.
type result struct {
	tg   *target
	resp *http.Response
	err  error
}

// race runs the call on its backend and, when no output has come after the hedge
// delay, on a second backend too. The first run to reach its commit point wins and the
// other is cancelled at once, so the caller never sees two answers.
func (c *call) race(h *hedging) (*http.Response, error) {
	h.calls.Add(1)
	defer h.calls.Add(-1)
	first, err := c.pick(nil)
	if err != nil {
		return nil, err
	}
	results := make(chan result, 2)
	cancels := make(map[*target]context.CancelCauseFunc, 2)
	start := func(tg *target) {
		ctx, cancel := context.WithCancelCause(c.ctx)
		cancels[tg] = cancel
		go func() {
			resp, err := c.runOn(ctx, tg)
			results <- result{tg, resp, err}
		}()
	}
	start(first)
	timer := time.NewTimer(h.hedger.Delay(first.name))
	defer timer.Stop()
	var failed *result
	hedged := false
	for pending := 1; pending > 0; {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				c.settleRace(r, cancels, pending, results)
				if hedged {
					c.obs.Hedge(r.tg.name)
				}
				return r.resp, nil
			}
			if failed == nil || r.tg == first {
				failed = &r
			}
		case <-timer.C:
			if second := c.hedge(h, first); second != nil {
				start(second)
				pending++
				hedged = true
				c.obs.Hedge("")
				defer h.extra.Add(-1)
			}
		}
	}
	return failed.resp, failed.err
}

// hedge picks the backend of a hedge, if the budget has room and a healthy backend
// other than the first is left.
func (c *call) hedge(h *hedging, first *target) *target {
	if !h.takeExtra() {
		return nil
	}
	tg, err := c.pick([]string{first.name})
	if err != nil {
		h.extra.Add(-1)
		return nil
	}
	return tg
}

// settleRace cancels the runs that lost to r, and gives back whatever they still
// produce.
func (c *call) settleRace(r result, cancels map[*target]context.CancelCauseFunc, pending int, results <-chan result) {
	c.served = r.tg
	for tg, cancel := range cancels {
		if tg != r.tg {
			cancel(errHedgeLost)
		}
	}
	if pending == 0 {
		return
	}
	go func() {
		for range pending {
			if lost := <-results; lost.err == nil {
				discard(lost.resp)
			}
		}
	}()
}

// discard releases an answer the caller will never see.
func discard(resp *http.Response) {
	if s, ok := resp.Body.(*streamBody); ok {
		s.abandon()
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
