package quota

import (
	"errors"
	"strconv"
	"time"
)

// ErrQuota is the reason [Limiter.Reserve] refused a call: the key had no quota within the
// wait the call may spend. errors.Is(err, ErrQuota) holds for the [*Error] it returns then.
var ErrQuota = errors.New("quota exhausted")

// Kind names the limit that refused a call.
type Kind uint8

// The limits a call can be refused by. The values match those the shared-mode script returns.
const (
	// Requests: the key's requests per minute (configured or learned).
	Requests Kind = 1
	// Tokens: the key's tokens per minute (configured or learned).
	Tokens Kind = 2
	// Concurrent: every one of the key's MaxConcurrent slots is held.
	Concurrent Kind = 3
	// Exhausted: the provider said the key is exhausted until a time: a 429's Retry-After,
	// or a remaining count of zero with its reset when the limit itself is unknown.
	Exhausted Kind = 4
)

// String returns the limit's name as error messages use it.
func (k Kind) String() string {
	switch k {
	case Requests:
		return "requests per minute"
	case Tokens:
		return "tokens per minute"
	case Concurrent:
		return "concurrent calls"
	case Exhausted:
		return "exhausted at the provider"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Error is the error [Limiter.Reserve] returns when it refuses a call. It unwraps to
// [ErrQuota].
type Error struct {
	// Key is the key the call asked quota of.
	Key string
	// Kind is the limit that refused it (the one that needed the longest wait).
	Kind Kind
	// Wait is how long the call would have had to wait to be admitted; 0 when that is not
	// known ([Concurrent]: a slot frees when another call ends).
	Wait time.Duration
}

// Error returns, for example, `quota: "gpt-4o": tokens per minute: admission needs 1.5s, more
// than the call may wait`.
func (e *Error) Error() string {
	s := "quota: " + strconv.Quote(e.Key) + ": " + e.Kind.String()
	if e.Wait > 0 {
		return s + ": admission needs " + e.Wait.String() + ", more than the call may wait"
	}
	return s + ": no room within the wait the call may spend"
}

// Unwrap returns [ErrQuota].
func (e *Error) Unwrap() error { return ErrQuota }
