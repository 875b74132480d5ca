package overhead

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/hashicorp/go-retryablehttp"
	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// BenchmarkTimeLimiterStdlib is a time limiter that returns at its deadline even when the
// call ignores its context, built the usual way: a context.WithTimeout and a goroutine per
// call. infermesh's breaker builds its time limiter this way, so this is most of what
// BenchmarkPolicy/infermesh costs; failsafe-go's timeout does not return before the call
// does, so it pays no goroutine handoff.
func BenchmarkTimeLimiterStdlib(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		actx, cancel := context.WithTimeout(ctx, PerTryTimeout)
		done := make(chan struct{})
		go func() {
			_, _ = Noop(actx)
			close(done)
		}()
		<-done
		cancel()
	}
}

// BenchmarkPolicy is the same no-op call through each in-process policy.
func BenchmarkPolicy(b *testing.B) {
	for _, pc := range PolicyCases() {
		b.Run(pc.Name, func(b *testing.B) {
			call, err := pc.New(PerTryTimeout, OverallTimeout)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if v, err := call(ctx, Noop); err != nil || v != 1 {
					b.Fatal(v, err)
				}
			}
		})
	}
}

// TestPolicyCases runs each in-process case once, and checks that the infermesh and
// failsafe-go policies measured above really carry their time limits: a call that hangs
// until its context ends is cut at the per-try timeout, retried, and the whole call ends by
// the overall timeout.
func TestPolicyCases(t *testing.T) {
	for _, pc := range PolicyCases() {
		call, err := pc.New(PerTryTimeout, OverallTimeout)
		if err != nil {
			t.Fatalf("%s: %v", pc.Name, err)
		}
		if v, err := call(context.Background(), Noop); err != nil || v != 1 {
			t.Fatalf("%s: no-op = %v, %v", pc.Name, v, err)
		}
	}
	for _, pc := range PolicyCases()[2:] {
		t.Run(pc.Name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Per try 1 s, overall 10 s: attempt 1 times out at 1 s, the backoff (at most 2 s)
				// passes (failsafe-go: 2 s +-50% jitter, at most 3 s), attempt 2 times out 1 s later:
				// at most 5 s in all, 2 calls.
				call, err := pc.New(time.Second, 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				var calls atomic.Int32
				start := time.Now()
				_, err = call(context.Background(), func(ctx context.Context) (int, error) {
					calls.Add(1)
					<-ctx.Done()
					return 0, ctx.Err()
				})
				elapsed := time.Since(start)
				if err == nil {
					t.Fatal("a hanging call succeeded")
				}
				if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, timeout.ErrExceeded) {
					t.Errorf("err = %v, want a timeout", err)
				}
				if n := calls.Load(); n != MaxAttempts {
					t.Errorf("%d attempts, want %d", n, MaxAttempts)
				}
				if elapsed < 2*time.Second || elapsed > 5*time.Second {
					t.Errorf("took %v, want between 2s and 5s", elapsed)
				}
			})
		})
	}
}

// chatBody is the request every HTTP case sends.
const chatBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}`

const chatReply = `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}`

// newServer is the loopback upstream: it reads the body and answers a fixed completion.
func newServer(reqs *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		b, _ := io.ReadAll(r.Body)
		if string(b) != chatBody {
			http.Error(w, "unexpected body", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, chatReply)
	}))
}

// httpCase is one HTTP case: newCall returns a function making the call once and reading
// the reply, and a function releasing the client.
type httpCase struct {
	name    string
	newCall func(url string) (call func(ctx context.Context) (string, error), closeFn func(), err error)
}

func readReply(resp *http.Response, err error) (string, error) {
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

func clientCall(hc *http.Client, url string) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(chatBody))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		return readReply(hc.Do(req))
	}
}

func httpCases() []httpCase {
	return []httpCase{
		{"bare-tuned", func(url string) (func(context.Context) (string, error), func(), error) {
			tr, err := transport.New(transport.Config{})
			if err != nil {
				return nil, nil, err
			}
			return clientCall(&http.Client{Transport: tr}, url), tr.CloseIdleConnections, nil
		}},
		{"infermesh", func(url string) (func(context.Context) (string, error), func(), error) {
			hc, err := llmclient.NewHTTPClient(llmclient.Config{})
			if err != nil {
				return nil, nil, err
			}
			return clientCall(hc, url), hc.CloseIdleConnections, nil
		}},
		{"failsafehttp", func(url string) (func(context.Context) (string, error), func(), error) {
			tr, err := transport.New(transport.Config{})
			if err != nil {
				return nil, nil, err
			}
			rp := failsafehttp.NewRetryPolicyBuilder().WithMaxAttempts(MaxAttempts).WithBackoff(BackoffInitial, BackoffMax).WithJitterFactor(0.5).Build()
			cb := circuitbreaker.NewBuilder[*http.Response]().
				HandleIf(func(r *http.Response, err error) bool { return err != nil || (r != nil && r.StatusCode >= 500) }).
				WithFailureThresholdRatio(10, 20).WithDelay(30 * time.Second).WithSuccessThreshold(3).Build()
			rt := failsafehttp.NewRoundTripper(tr, timeout.New[*http.Response](OverallTimeout), rp, cb, timeout.New[*http.Response](PerTryTimeout))
			return clientCall(&http.Client{Transport: rt}, url), tr.CloseIdleConnections, nil
		}},
		{"retryablehttp", func(url string) (func(context.Context) (string, error), func(), error) {
			tr, err := transport.New(transport.Config{})
			if err != nil {
				return nil, nil, err
			}
			rc := retryablehttp.NewClient()
			rc.HTTPClient = &http.Client{Transport: tr}
			rc.Logger = nil
			rc.RetryMax = MaxAttempts - 1
			rc.RetryWaitMin, rc.RetryWaitMax = BackoffInitial, BackoffMax
			body := []byte(chatBody)
			return func(ctx context.Context) (string, error) {
				req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				if err != nil {
					return "", err
				}
				req.Header.Set("Content-Type", "application/json")
				return readReply(rc.Do(req))
			}, tr.CloseIdleConnections, nil
		}},
	}
}

// BenchmarkHTTP is the same small POST to a loopback server through each HTTP client.
func BenchmarkHTTP(b *testing.B) {
	var reqs atomic.Int64
	srv := newServer(&reqs)
	defer srv.Close()
	url := srv.URL + "/v1/chat/completions"
	for _, hc := range httpCases() {
		b.Run(hc.name, func(b *testing.B) {
			call, closeFn, err := hc.newCall(url)
			if err != nil {
				b.Fatal(err)
			}
			defer closeFn()
			ctx := context.Background()
			for range 20 { // open and warm the connection
				if _, err := call(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := call(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestHTTPCases makes a few calls through every HTTP case and checks each reached the
// server with the right body and brought back the server's reply.
func TestHTTPCases(t *testing.T) {
	var reqs atomic.Int64
	srv := newServer(&reqs)
	defer srv.Close()
	for _, hc := range httpCases() {
		call, closeFn, err := hc.newCall(srv.URL + "/v1/chat/completions")
		if err != nil {
			t.Fatalf("%s: %v", hc.name, err)
		}
		before := reqs.Load()
		for range 3 {
			got, err := call(context.Background())
			if err != nil {
				t.Fatalf("%s: %v", hc.name, err)
			}
			if got != chatReply {
				t.Fatalf("%s: reply %q", hc.name, got)
			}
		}
		closeFn()
		if n := reqs.Load() - before; n != 3 {
			t.Errorf("%s: server saw %d requests for 3 calls", hc.name, n)
		}
	}
}
