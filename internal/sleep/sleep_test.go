package sleep_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/internal/sleep"
)

func TestFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !sleep.For(context.Background(), time.Second) || time.Since(start) != time.Second {
			t.Fatalf("a full sleep returned false or after %v", time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start = time.Now()
		if sleep.For(ctx, time.Second) || time.Since(start) != 100*time.Millisecond {
			t.Fatalf("a sleep cut by its context returned true or after %v", time.Since(start))
		}
		if !sleep.For(ctx, 0) {
			t.Fatal("a zero sleep on an ended context returned false")
		}
	})
}
