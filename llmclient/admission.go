package llmclient

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/quota"
	"github.com/infermesh/infermesh/tracing"
)

// held is an attempt's hold on its backend's quota, until the answer says what it used.
type held struct {
	res *quota.Reservation
	key string
}

// admit reserves the quota of one send of the attempt: one request and the estimate of
// its tokens, under its target's key, and records the admission on the call. Without a
// Quota it admits everything.
func (a *try) admit() error {
	q := a.c.t.cfg.Quota
	if q == nil {
		return nil
	}
	tokens := len(a.tg.body)/4 + a.c.t.cfg.QuotaDefaultMaxTokens
	if a.c.info.MaxTokens >= 0 {
		tokens = len(a.tg.body)/4 + int(min(a.c.info.MaxTokens, 1<<30))
	}
	start := time.Now()
	res, err := q.Reserve(a.ctx, a.tg.key, tokens)
	adm := tracing.Admission{Backend: a.tg.key, Waited: time.Since(start), Tokens: tokens, Mode: q.Mode().String()}
	if err != nil {
		var qe *quota.Error
		if errors.As(err, &qe) {
			adm.Refused, adm.RetryIn = qe.Kind.String(), qe.Wait
			adm.Remaining = remaining(q, a.tg.key)
			a.c.obs.Admission(adm)
			// Refused before it was sent: the upstream's health is not in question,
			// and waiting was already tried.
			return &attemptError{err: fmt.Errorf("llmclient: %w", err), verdict: breaker.Verdict{
				Outcome: breaker.OutcomeExcluded, Class: breaker.ClassRateLimited, RetryAfter: qe.Wait}}
		}
		return err
	}
	if res.Shared() {
		adm.Mode = quota.Shared.String()
	} else if adm.Mode == quota.Shared.String() { // Redis failed during this admission
		adm.Mode = quota.Degraded.String()
	}
	adm.Remaining = remaining(q, a.tg.key)
	a.c.obs.Admission(adm)
	a.hold = held{res: res, key: a.tg.key}
	return nil
}

func remaining(q *quota.Limiter, key string) tracing.Remaining {
	req, tok := q.Remaining(key)
	return tracing.Remaining{Requests: req, Tokens: tok}
}

// observe tells the quota what the provider said of it: the x-ratelimit-* headers of
// every answer, a 429's Retry-After.
func (a *try) observeQuota(resp *http.Response) {
	if q := a.c.t.cfg.Quota; q != nil {
		q.Observe(a.tg.key, resp.Header, resp.StatusCode)
	}
}

// settle trues the attempt's reservation up: to the usage the answer reported, to 0
// tokens for an answer that used none (an error status), or, when the usage is not
// known (a call that failed after it was sent), to the estimate.
func (a *try) settle(u llmwire.Usage, answered bool) {
	a.c.settle(a.hold, u, answered)
	a.hold = held{}
}

// settle trues up a hold on the quota and records it on the call; see try.settle.
func (c *call) settle(h held, u llmwire.Usage, answered bool) {
	if h.res == nil {
		return
	}
	tokens := -1
	switch {
	case u.Has && u.Total > 0:
		tokens = int(u.Total)
	case u.Has && u.InputTokens >= 0 && u.OutputTokens >= 0:
		tokens = int(u.InputTokens + u.OutputTokens)
	case answered:
		tokens = 0
	}
	h.res.Settle(tokens)
	c.obs.QuotaSettled(h.key, h.res.Tokens(), tokens, remaining(c.t.cfg.Quota, h.key))
}
