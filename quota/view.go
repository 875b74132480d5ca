package quota

import "math"

// Mode is how a [Limiter] admits calls at a moment.
type Mode uint8

// The modes of a Limiter.
const (
	// Local: no Redis was configured; the local limits decide.
	Local Mode = iota
	// Shared: the shared quota in Redis decides.
	Shared
	// Degraded: Redis was configured but failed or was too slow; the local limits decide,
	// each holding this replica's share, until Redis answers again.
	Degraded
)

// String returns "local", "shared" or "degraded", as metrics and spans record the mode.
func (m Mode) String() string {
	switch m {
	case Shared:
		return "shared"
	case Degraded:
		return "degraded"
	}
	return "local"
}

// Mode returns how the Limiter admits calls now.
func (l *Limiter) Mode() Mode {
	switch {
	case l.sh == nil:
		return Local
	case l.sh.on.Load():
		return Shared
	}
	return Degraded
}

// Shared reports whether the shared quota in Redis admitted the reservation (false: the
// local limits did).
func (r *Reservation) Shared() bool { return r.shared }

// Remaining returns what the Limiter believes key has left now of its whole quota, without a
// round trip: requests and tokens, refilled since the last admission (in shared mode, as the
// last shared admission of the key left them), 0 while the provider says the key is
// exhausted, and -1 for a limit that is neither configured nor learned. Metrics report it as
// the remaining quota per backend.
func (l *Limiter) Remaining(key string) (requests, tokens int) {
	v, ok := l.keys.Load(key)
	if !ok {
		lim := l.limits[key] // a key never seen has its whole configured quota
		return orUnknown(lim.RequestsPerMinute), orUnknown(lim.TokensPerMinute)
	}
	k := v.(*keyState)
	share, window, now := l.localShare(), int64(l.set.window), l.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	req, tok := k.effective()
	exhausted := k.exhaustedUntil > now
	left := func(b *bucket, limit float64) int {
		switch {
		case exhausted:
			return 0
		case limit <= 0:
			return -1
		}
		// The local buckets hold this replica's share of the limit (see admitShared).
		return int(math.Max(math.Floor(b.available(now, limit*share, window)/share), 0))
	}
	return left(&k.requests, req), left(&k.tokens, tok)
}

func orUnknown(limit int) int {
	if limit <= 0 {
		return -1
	}
	return limit
}
