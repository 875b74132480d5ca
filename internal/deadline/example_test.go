package deadline_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/infermesh/infermesh/internal/deadline"
)

// A request context cancelled at its deadline by the shared scheduler instead of a
// runtime timer of its own.
func ExampleScheduler() {
	var s deadline.Scheduler
	errTooSlow := errors.New("too slow")
	ctx, cancel := context.WithCancelCause(context.Background())
	s.After(10*time.Millisecond, func() { cancel(errTooSlow) })
	<-ctx.Done()
	fmt.Println(context.Cause(ctx))

	done := s.After(time.Hour, func() { fmt.Println("never") })
	fmt.Println(done.Stop())
	// Output:
	// too slow
	// true
}
