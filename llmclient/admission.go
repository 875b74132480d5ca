package llmclient

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/quota"
)

// admit reserves the quota of one send of the attempt: one request and the estimate of
// its tokens, under its target's key. Without a Quota it admits everything.
func (a *try) admit() error {
	q := a.c.t.cfg.Quota
	if q == nil {
		return nil
	}
	tokens := len(a.tg.body)/4 + a.c.t.cfg.QuotaDefaultMaxTokens
	if a.c.info.MaxTokens >= 0 {
		tokens = len(a.tg.body)/4 + int(min(a.c.info.MaxTokens, 1<<30))
	}
	res, err := q.Reserve(a.ctx, a.tg.key, tokens)
	if err != nil {
		var qe *quota.Error
		if errors.As(err, &qe) {
			// Refused before it was sent: the upstream's health is not in question,
			// and waiting was already tried.
			return &attemptError{err: fmt.Errorf("llmclient: %w", err), verdict: breaker.Verdict{
				Outcome: breaker.OutcomeExcluded, Class: breaker.ClassRateLimited, RetryAfter: qe.Wait}}
		}
		return err
	}
	a.res = res
	return nil
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
	if a.res != nil {
		settleTokens(a.res, u, answered)
		a.res = nil
	}
}

// settle trues up a stream's reservation when the stream ends.
func settle(res *quota.Reservation, u llmwire.Usage) {
	if res != nil {
		settleTokens(res, u, false)
	}
}

func settleTokens(res *quota.Reservation, u llmwire.Usage, answered bool) {
	tokens := -1
	switch {
	case u.Has && u.Total > 0:
		tokens = int(u.Total)
	case u.Has && u.InputTokens >= 0 && u.OutputTokens >= 0:
		tokens = int(u.InputTokens + u.OutputTokens)
	case answered:
		tokens = 0
	}
	res.Settle(tokens)
}
