// Package sleep holds the one wait the policy and the quota share: a pause that ends
// early when its context does.
package sleep

import (
	"context"
	"time"
)

// For waits d and reports true, or reports false as soon as ctx ends first. A d of zero
// or less returns true at once, without looking at ctx.
func For(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
