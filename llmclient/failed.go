package llmclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/infermesh/infermesh/breaker"
)

// failed decides what the caller gets when the policy gave up with err; resp is the last
// attempt's response, if it produced one: a fallback's answer when a trigger says so,
// else the upstream's failure as an HTTP response in the OpenAI error shape (so that the
// caller's SDK returns its own error type), else a typed Go error.
func (c *call) failed(resp *http.Response, err error) (*http.Response, error) {
	v := classify(err)
	if c.t.chain.Triggered(err, v) {
		fresp, ferr := c.fallback(err, v)
		if ferr == nil {
			if resp != nil {
				resp.Body.Close()
			}
			return fresp, nil
		}
		err = fmt.Errorf("%w; %w", err, ferr)
	}
	c.obs.End(err, string(v.Class))
	defer c.cancel()
	defer c.end()
	var ae *APIError
	if errors.As(err, &ae) {
		// The failure came from an upstream answer: it goes back as an answer.
		return c.errorResponse(resp, ae, v), nil
	}
	if resp != nil {
		resp.Body.Close()
	}
	return nil, err
}

// fallback serves the call from the fallback chain, within what is left of the call's
// deadline (the route's Timeout bounds the whole call).
func (c *call) fallback(cause error, v breaker.Verdict) (*http.Response, error) {
	if cerr := c.ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("llmclient: no time left for a fallback: %w", context.Cause(c.ctx))
	}
	resp, err := c.t.chain.Serve(c.ctx, c.fallbackRequest(cause), v)
	if err != nil {
		return nil, err
	}
	c.mark(resp.Header)
	if c.info.Stream && isEventStream(resp) {
		// A fallback's stream gets the primary's idle timeout and tracing; the span
		// and the call's context end with it.
		return c.guardFallbackStream(resp), nil
	}
	// The answer is read after RoundTrip returns, so the call's context (the route's
	// deadline) ends when the body is closed, not here.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: c.cancel}
	c.end()
	c.obs.End(nil, "")
	return resp, nil
}

// classify is the verdict on a policy's final error.
func classify(err error) breaker.Verdict {
	var be *breaker.Error
	if errors.As(err, &be) {
		return be.Verdict
	}
	return breaker.DefaultClassifier(err)
}

// cancelOnClose ends a response's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
