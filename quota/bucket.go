package quota

import "math"

// bucket is one limit of one key (its requests or its tokens) on this process's clock. A
// bucket of capacity limit refills limit tokens per window, so each token stands for
// window/limit of time, and the bucket is kept as the one instant that says it all: when it
// is full again. Taking n tokens moves that instant n tokens' time later, giving them back
// moves it earlier, and an instant in the past means full. The shared mode keeps the same
// instant in Redis (admit.lua, adjust.lua), so the local fallback behaves like it.
//
// A call waits for at most a full bucket: one asking more than the capacity is admitted when
// the bucket is full and leaves it in debt. Debt is bounded at one window (the instant is at
// most two windows ahead), so a wrong estimate cannot block a key for longer.
//
// golang.org/x/time/rate has the same refill but cannot serve here: a reservation can be
// cancelled only before its time to act, so neither a cancelled call nor a true-up could give
// tokens back, and it refuses any n above its burst.
type bucket struct {
	full int64 // nanoseconds on the Limiter's clock
}

// ahead returns how long (ns) until the bucket is full again.
func (b *bucket) ahead(now int64) float64 {
	return float64(max(b.full-now, 0))
}

// wait returns how long (ns) until n tokens (at most limit) are in the bucket, and headroom
// (ns) more when that is any time at all (see Config.Headroom). A limit of 0 is no limit.
func (b *bucket) wait(now int64, n, limit float64, window, headroom int64) int64 {
	if limit <= 0 {
		return 0
	}
	w := b.ahead(now) - (limit-min(n, limit))*float64(window)/limit
	if w <= 0 {
		return 0
	}
	w += float64(headroom)
	return int64(math.Ceil(w))
}

// charge takes n tokens out of the bucket; a negative n gives them back.
func (b *bucket) charge(now int64, n, limit float64, window int64) {
	if limit <= 0 {
		return
	}
	b.set(now, b.ahead(now)+n*float64(window)/limit, window)
}

// tighten lowers what the bucket holds to at most remaining tokens.
func (b *bucket) tighten(now int64, remaining, limit float64, window int64) {
	if limit <= 0 || remaining >= limit {
		return
	}
	b.set(now, max(b.ahead(now), (limit-max(remaining, 0))*float64(window)/limit), window)
}

// available returns the tokens in the bucket now; negative in debt.
func (b *bucket) available(now int64, limit float64, window int64) float64 {
	if limit <= 0 {
		return math.Inf(1)
	}
	return limit - b.ahead(now)*limit/float64(window)
}

// set makes the bucket full again ahead ns from now, bounded to [0, 2 windows].
func (b *bucket) set(now int64, ahead float64, window int64) {
	b.full = now + int64(min(max(ahead, 0), float64(2*window)))
}
