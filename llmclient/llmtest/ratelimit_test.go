package llmtest_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// These tests run under testing/synctest, so the buckets refill on the fake clock and every
// figure is exact.

// limits returns the x-ratelimit-* headers of a response: limit, remaining and reset, for
// requests then tokens ("" where absent).
func limits(h http.Header) [6]string {
	var out [6]string
	for i, k := range []string{"Limit-Requests", "Remaining-Requests", "Reset-Requests", "Limit-Tokens", "Remaining-Tokens", "Reset-Tokens"} {
		out[i] = h.Get("X-Ratelimit-" + k)
	}
	return out
}

func TestRateLimitRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, _ := memServer(t, llmtest.WithRateLimit(llmtest.RateLimit{RequestsPerMinute: 2}))
		step := func(wait time.Duration, status int, want [6]string) rawResponse {
			t.Helper()
			time.Sleep(wait)
			r := post(t, srv, llmtest.PathChatCompletions, chatBody)
			if r.status != status || limits(r.header) != want {
				t.Errorf("after %v: status %d, limits %q; want %d, %q", wait, r.status, limits(r.header), status, want)
			}
			return r
		}
		step(0, 200, [6]string{"2", "1", "30s"})
		step(0, 200, [6]string{"2", "0", "1m0s"})
		r := step(0, 429, [6]string{"2", "0", "1m0s"})
		if want := `{"error":{"message":"Rate limit reached for m in organization org-llmtest on requests per min (RPM): Limit 2, Used 2, Requested 1. Please try again in 30s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}` + "\n"; r.body != want {
			t.Errorf("429 body %s\nwant %s", r.body, want)
		}
		if r.header.Get("Retry-After") != "30" || r.header.Get("Retry-After-Ms") != "30000" {
			t.Errorf("retry hints %q, %q", r.header.Get("Retry-After"), r.header.Get("Retry-After-Ms"))
		}
		step(30*time.Second, 200, [6]string{"2", "0", "1m0s"})
		r = step(10500*time.Millisecond, 429, [6]string{"2", "0", "49.5s"})
		if r.header.Get("Retry-After") != "20" || r.header.Get("Retry-After-Ms") != "19500" || !strings.Contains(r.body, "Please try again in 19.5s.") {
			t.Errorf("retry hints %q, %q; body %s", r.header.Get("Retry-After"), r.header.Get("Retry-After-Ms"), r.body)
		}
		step(2*time.Minute, 200, [6]string{"2", "1", "30s"}) // refilled, never above full
		if got, want := srv.RateLimitCounts(), (llmtest.RateLimitCounts{Admitted: 4, LimitedRequests: 2}); got != want {
			t.Errorf("counts %+v, want %+v", got, want)
		}
		// Routes that take no model are not limited.
		if r := do(t, srv.Client(), "GET", srv.URL+llmtest.PathModels, ""); r.status != 200 || r.header.Get("X-Ratelimit-Limit-Requests") != "" {
			t.Errorf("models: %d %v", r.status, r.header)
		}
	})
}

func TestRateLimitTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, _ := memServer(t, llmtest.WithRateLimit(llmtest.RateLimit{TokensPerMinute: 1000}))
		step := func(wait time.Duration, path, body string, status int, want [6]string) rawResponse {
			t.Helper()
			time.Sleep(wait)
			r := post(t, srv, path, body)
			if r.status != status || limits(r.header) != want {
				t.Errorf("%s: status %d, limits %q; want %d, %q", body, r.status, limits(r.header), status, want)
			}
			return r
		}
		chat := func(maxTokens string) string {
			return `{"model":"m","max_tokens":` + maxTokens + `,"messages":[{"role":"user","content":"hi"}]}`
		}
		// 7 prompt tokens + max_tokens 100 = 107 tokens: 6.42s of refill at 1000 a minute.
		step(0, llmtest.PathChatCompletions, chat("100"), 200, [6]string{"", "", "", "1000", "893", "6.42s"})
		// Embeddings cost their input: 3 tokens.
		step(0, llmtest.PathEmbeddings, `{"model":"m","input":"a b c"}`, 200, [6]string{"", "", "", "1000", "890", "6.6s"})
		// Without a limit, a request costs the completion the server will send: 7 + 5.
		step(0, llmtest.PathResponses, `{"model":"m","input":"x"}`, 200, [6]string{"", "", "", "1000", "878", "7.32s"})
		// 907 tokens do not fit in 878: the bucket needs 29 more, 1.74s.
		r := step(0, llmtest.PathChatCompletions, chat("900"), 429, [6]string{"", "", "", "1000", "878", "7.32s"})
		if want := `{"error":{"message":"Rate limit reached for m in organization org-llmtest on tokens per min (TPM): Limit 1000, Used 122, Requested 907. Please try again in 1.74s.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}` + "\n"; r.body != want {
			t.Errorf("429 body %s\nwant %s", r.body, want)
		}
		if r.header.Get("Retry-After") != "2" || r.header.Get("Retry-After-Ms") != "1740" {
			t.Errorf("retry hints %q, %q", r.header.Get("Retry-After"), r.header.Get("Retry-After-Ms"))
		}
		step(1740*time.Millisecond, llmtest.PathChatCompletions, chat("900"), 200, [6]string{"", "", "", "1000", "0", "1m0s"})
		// More than the limit can never pass, and gets no retry hint.
		r = step(time.Minute, llmtest.PathChatCompletions, chat("1000"), 429, [6]string{"", "", "", "1000", "1000", "0s"})
		if !strings.HasPrefix(r.body, `{"error":{"message":"Request too large for m in organization org-llmtest on tokens per min (TPM): Limit 1000, Requested 1007.`) ||
			r.header.Get("Retry-After") != "" || r.header.Get("Retry-After-Ms") != "" {
			t.Errorf("too large: %v %s", r.header, r.body)
		}
		if got, want := srv.RateLimitCounts(), (llmtest.RateLimitCounts{Admitted: 4, LimitedTokens: 2}); got != want {
			t.Errorf("counts %+v, want %+v", got, want)
		}
	})
}

// TestRateLimitResetFormats checks OpenAI's duration format on a few bucket sizes. chatBody
// costs 1 request and 12 tokens (7 prompt, 5 completion).
func TestRateLimitResetFormats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			rpm, tpm     int
			status       int
			reqs, tokens string
		}{
			{3000, 0, 200, "20ms", ""},
			{1, 0, 200, "1m0s", ""},
			{0, 12, 200, "", "1m0s"},
			{0, 24, 200, "", "30s"},
			{0, 7, 429, "", "0s"},              // too large: not charged
			{7, 1000000, 200, "8.572s", "1ms"}, // 8.5714...s and 0.72ms round up
		} {
			srv, _ := memServer(t, llmtest.WithRateLimit(llmtest.RateLimit{RequestsPerMinute: tc.rpm, TokensPerMinute: tc.tpm}))
			r := post(t, srv, llmtest.PathChatCompletions, chatBody)
			if got := limits(r.header); r.status != tc.status || got[2] != tc.reqs || got[5] != tc.tokens {
				t.Errorf("rpm %d tpm %d: status %d, reset %q, %q; want %d, %q, %q", tc.rpm, tc.tpm, r.status, got[2], got[5], tc.status, tc.reqs, tc.tokens)
			}
		}
	})
}

func TestRateLimitWithoutHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, _ := memServer(t, llmtest.WithRateLimit(llmtest.RateLimit{RequestsPerMinute: 1, NoHeaders: true}))
		for i, want := range []int{200, 429} {
			r := post(t, srv, llmtest.PathChatCompletions, chatBody)
			if r.status != want || limits(r.header) != [6]string{} {
				t.Errorf("request %d: status %d, limits %q", i, r.status, limits(r.header))
			}
			if want == 429 && r.header.Get("Retry-After") != "60" {
				t.Errorf("429 without its retry hint: %v", r.header)
			}
		}
	})
}

// TestRateLimitSDKRetry shows openai-go waiting out a 429 by its retry-after-ms, and the
// request records that count the attempts of one call by X-Stainless-Retry-Count.
func TestRateLimitSDKRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, _ := memServer(t, llmtest.WithRateLimit(llmtest.RateLimit{RequestsPerMinute: 2}))
		c := newOpenAIGo(srv, option.WithMaxRetries(2))
		params := responses.ResponseNewParams{Model: "m", Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("hi")}}
		start := time.Now()
		for range 3 {
			if _, err := c.Responses.New(t.Context(), params); err != nil {
				t.Fatal(err)
			}
		}
		if since := time.Since(start); since != 30*time.Second {
			t.Errorf("three calls took %v, want the 30s the third waited", since)
		}
		var retries []string
		for _, r := range srv.Requests() {
			retries = append(retries, r.Header.Get("X-Stainless-Retry-Count"))
		}
		if strings.Join(retries, ",") != "0,0,0,1" {
			t.Errorf("X-Stainless-Retry-Count of the attempts: %q, want 0,0,0,1", retries)
		}
		if got, want := srv.RateLimitCounts(), (llmtest.RateLimitCounts{Admitted: 3, LimitedRequests: 1}); got != want {
			t.Errorf("counts %+v, want %+v", got, want)
		}

		// With retries off the caller sees the 429 as an API error.
		_, err := newOpenAIGo(srv).Responses.New(t.Context(), params)
		var apiErr *oai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Type != "requests" {
			t.Errorf("error %v", err)
		}
	})
}
