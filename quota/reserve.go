package quota

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/infermesh/infermesh/internal/sleep"
)

// Reservation is one admitted call's hold on its key's quota: one request, its estimated
// tokens and, with MaxConcurrent, a slot. End it with one of [Reservation.Settle] (the call
// reached the provider) or [Reservation.Cancel] (it did not); only the first end counts,
// later ones do nothing. A reservation never ended keeps its slot. It is safe for concurrent
// use.
type Reservation struct {
	l      *Limiter
	k      *keyState
	tokens int  // reserved
	shared bool // reserved in Redis rather than in the local buckets
	slot   bool // holds one of k.slots
	ended  atomic.Bool
}

// Tokens returns the number of tokens reserved.
func (r *Reservation) Tokens() int { return r.tokens }

// Reserve admits one call of key that is estimated to use tokens tokens (see
// [EstimateTokens]): it takes one request and the tokens from the key's quota, and a slot
// when the key has MaxConcurrent. When the quota is not there now, Reserve waits for it, but
// never longer than Config.MaxWait nor past ctx's deadline; a call that cannot be admitted
// within that is refused at once with an [*Error] (errors.Is(err, ErrQuota)) that says which
// limit and how long the call would have had to wait. When ctx is done, or ends while Reserve
// waits, it returns ctx's cause and takes nothing. A negative tokens is an error.
//
// In shared mode the decision takes one Redis round trip; when Redis fails or is slower than
// Config.RedisTimeout, the call is admitted on the local limits instead (see the package
// documentation).
func (l *Limiter) Reserve(ctx context.Context, key string, tokens int) (*Reservation, error) {
	if tokens < 0 {
		return nil, fmt.Errorf("quota: Reserve %q: tokens must not be negative, got %d", key, tokens)
	}
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	start := time.Now()
	budget := l.set.maxWait
	if dl, ok := ctx.Deadline(); ok {
		budget = max(min(budget, dl.Sub(start)), 0)
	}
	r := &Reservation{l: l, k: l.key(key), tokens: tokens}
	now := start
	waited, err := r.takeSlot(ctx, budget)
	if err != nil {
		return nil, l.refused(err)
	}
	if waited { // the clock is read again only then: it is most of a local admission's cost
		now = time.Now()
		budget = max(budget-now.Sub(start), 0)
	}
	wait, err := l.admit(ctx, r, now, budget)
	if err == nil {
		if !sleep.For(ctx, wait) {
			err = context.Cause(ctx)
			r.Cancel()
		}
	} else {
		r.releaseSlot()
	}
	if err != nil {
		return nil, l.refused(err)
	}
	if h := l.hooks.Admitted; h != nil {
		h(key, time.Since(start), r.shared)
	}
	return r, nil
}

// admit takes the call's request and tokens from the shared quota, or from the local limits
// when there is no Redis or it failed, and returns how long the call must wait before it may
// go. It takes nothing when it returns an error.
func (l *Limiter) admit(ctx context.Context, r *Reservation, now time.Time, budget time.Duration) (time.Duration, error) {
	if l.sh != nil && l.sh.on.Load() {
		wait, err := l.admitShared(ctx, r.k, r.tokens, budget)
		if err != errRedis {
			r.shared = err == nil
			return wait, err
		}
		now = time.Now() // the failed round trip took time
	}
	return l.admitLocal(r.k, r.tokens, l.clock(now), budget)
}

// admitLocal admits a call on the local limits at now (the Limiter's clock).
func (l *Limiter) admitLocal(k *keyState, tokens int, now int64, budget time.Duration) (time.Duration, error) {
	window, share := int64(l.set.window), l.localShare()
	k.mu.Lock()
	defer k.mu.Unlock()
	wait, kind := k.localWait(now, 1, float64(tokens), share, window, l.set.headroom)
	if time.Duration(wait) > budget {
		return 0, &Error{Key: k.name, Kind: kind, Wait: time.Duration(wait)}
	}
	k.chargeLocal(now, 1, tokens, share, window, l.sh != nil)
	return time.Duration(wait), nil
}

// Settle ends the reservation after the call: it trues the reserved tokens up to
// actualTokens (the usage the provider reported; more takes more, less gives the rest
// back) and frees the slot. A negative actualTokens means the usage is unknown: the estimate
// stands.
func (r *Reservation) Settle(actualTokens int) {
	if !r.ended.CompareAndSwap(false, true) {
		return
	}
	r.releaseSlot()
	if actualTokens < 0 {
		actualTokens = r.tokens
	}
	if d := r.tokens - actualTokens; d != 0 {
		r.l.giveBack(r, 0, d)
	}
	if h := r.l.hooks.Settled; h != nil {
		h(r.k.name, r.tokens, actualTokens)
	}
}

// Cancel ends the reservation of a call that never reached the provider (it failed before it
// was sent, or the connection did): it gives the request and the tokens back and frees the
// slot. A call the provider answered, even with a 429, reached it: settle it, with 0 tokens
// when it was refused, so that its request still counts.
func (r *Reservation) Cancel() {
	if !r.ended.CompareAndSwap(false, true) {
		return
	}
	r.releaseSlot()
	r.l.giveBack(r, 1, r.tokens)
}

// giveBack returns requests and tokens of r to where they were taken from; negative values
// take more.
func (l *Limiter) giveBack(r *Reservation, requests, tokens int) {
	k := r.k
	if r.shared {
		l.sh.giveBack(k, requests, tokens)
		return
	}
	window, share := int64(l.set.window), l.localShare()
	k.mu.Lock()
	k.chargeLocal(l.now(), -requests, -tokens, share, window, l.sh != nil)
	k.mu.Unlock()
}

// takeSlot takes one of the key's concurrency slots, waiting at most budget for one, and
// reports whether it waited.
func (r *Reservation) takeSlot(ctx context.Context, budget time.Duration) (waited bool, err error) {
	slots := r.k.slots
	if slots == nil {
		return false, nil
	}
	select {
	case slots <- struct{}{}:
		r.slot = true
		return false, nil
	default:
	}
	if budget <= 0 {
		return false, &Error{Key: r.k.name, Kind: Concurrent}
	}
	t := time.NewTimer(budget)
	defer t.Stop()
	select {
	case slots <- struct{}{}:
		r.slot = true
		return true, nil
	case <-t.C:
		return true, &Error{Key: r.k.name, Kind: Concurrent}
	case <-ctx.Done():
		return true, context.Cause(ctx)
	}
}

func (r *Reservation) releaseSlot() {
	if r.slot {
		r.slot = false
		<-r.k.slots
	}
}

// refused reports a refusal to the Refused hook and returns err.
func (l *Limiter) refused(err error) error {
	var qe *Error
	if h := l.hooks.Refused; h != nil && errors.As(err, &qe) {
		h(qe)
	}
	return err
}
