// Package sdkerr holds the one definition of "a typed error" that this module's tests
// (chaos, llmclient's no-lost-calls test) judge every failed call by: an error a caller of
// go-openai or openai-go can act on. It is imported by tests only.
package sdkerr

import (
	"context"
	"errors"
	"fmt"

	openaigo "github.com/openai/openai-go/v3"
	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/transport"
)

// Kind names the typed error err is, one a caller can act on, or returns "" when err
// is nil or not typed. It is the one definition of "a typed error" in this module's tests:
//
//   - A failure that came from an upstream answer reaches the caller in its SDK's own
//     type, with a status that carries its class: *openai.APIError of go-openai,
//     *openai.Error of openai-go.
//   - What infermesh decides on its own is a typed Go error: a *llmclient.StreamError
//     after output reached the caller, breaker.ErrOpen, llmclient.ErrFirstTokenTimeout,
//     a *transport.BodyError (a body broken after its headers), a *breaker.Error (the
//     policy gave up), or the call's own deadline (context.DeadlineExceeded).
//
// Anything else (an SDK's decode error, a bare *llmclient.APIError, go-openai's
// *openai.RequestError for a body that is not an OpenAI error) is not typed: the
// caller could not tell what happened.
func Kind(err error) string {
	var (
		goAPI *openai.APIError
		sdk   *openaigo.Error
		se    *llmclient.StreamError
		body  *transport.BodyError
		be    *breaker.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &goAPI):
		return fmt.Sprintf("*openai.APIError %d", goAPI.HTTPStatusCode)
	case errors.As(err, &sdk):
		return fmt.Sprintf("*openai.Error %d", sdk.StatusCode)
	case errors.As(err, &se):
		return "*llmclient.StreamError (" + streamCause(se) + ")"
	case errors.Is(err, breaker.ErrOpen):
		return "breaker.ErrOpen"
	case errors.Is(err, llmclient.ErrFirstTokenTimeout):
		return "llmclient.ErrFirstTokenTimeout"
	case errors.As(err, &body):
		return "*transport.BodyError"
	case errors.As(err, &be):
		return "*breaker.Error (" + string(be.Verdict.Class) + ")"
	case errors.Is(err, context.DeadlineExceeded):
		return "context.DeadlineExceeded"
	}
	return ""
}

// streamCause names the sentinel cause of a stream's end.
func streamCause(se *llmclient.StreamError) string {
	for _, c := range []struct {
		err  error
		name string
	}{
		{llmclient.ErrIdleTimeout, "idle timeout"},
		{llmclient.ErrMaxStreamDuration, "max duration"},
		{llmclient.ErrUpstreamEvent, "error event"},
		{llmclient.ErrStreamTruncated, "truncated"},
		{llmclient.ErrResponseTooLarge, "too large"},
		{llmclient.ErrMalformedResponse, "malformed"},
		{llmclient.ErrStreamBroken, "broken"},
		{context.DeadlineExceeded, "deadline"},
	} {
		if errors.Is(se, c.err) {
			return c.name
		}
	}
	return fmt.Sprintf("%T", se.Err)
}
