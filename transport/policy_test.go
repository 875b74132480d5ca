package transport_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/transport"
)

// TestPolicyWithClassify runs transport.Classify inside a breaker.Policy against a server
// that answers like Envoy.
func TestPolicyWithClassify(t *testing.T) {
	t.Parallel()
	type reply struct {
		status int
		header http.Header
		body   string
	}
	tests := []struct {
		name     string
		replies  []reply
		wantErr  error
		attempts int64
	}{
		{"connect failure then ok", []reply{
			{503, textPlain(), resetPrefix + "reset reason: connection failure"}, {200, nil, "ok"}}, nil, 2},
		{"no healthy upstream", []reply{{503, textPlain(), "no healthy upstream"}}, breaker.ErrNoHealthyUpstream, 1},
		{"mesh retried", []reply{{503, textPlain("X-Envoy-Attempt-Count", "3"), resetPrefix + "reset reason: remote reset"}}, breaker.ErrMeshRetried, 1},
		{"auth", []reply{{401, nil, "bad key"}}, breaker.ErrNotRetryable, 1},
		{"rate limited twice", []reply{{429, http.Header{"Retry-After-Ms": {"5"}}, ""}}, breaker.ErrRetriesExhausted, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				rp := tt.replies[min(i, len(tt.replies)-1)]
				for k, v := range rp.header {
					w.Header()[k] = v
				}
				w.WriteHeader(rp.status)
				io.WriteString(w, rp.body)
			}))
			defer srv.Close()
			tr, _ := transport.New(transport.Config{})
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			p, err := breaker.New(breaker.Config{
				MaxAttempts: 3,
				Backoff:     breaker.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond},
				Classifier:  transport.Classify,
			})
			if err != nil {
				t.Fatal(err)
			}
			body, err := breaker.Do(context.Background(), p, func(ctx context.Context) (string, error) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
				resp, err := client.Do(req)
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				if resp.StatusCode >= 400 {
					serr := transport.NewStatusError(resp)
					io.Copy(io.Discard, resp.Body)
					return "", serr
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil {
					return "", &transport.BodyError{Err: err}
				}
				return string(b), nil
			})
			if tt.wantErr == nil {
				if err != nil || body != "ok" {
					t.Fatalf("Do = %q, %v", body, err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Do error %v, want %v", err, tt.wantErr)
			}
			if got := n.Load(); got != tt.attempts {
				t.Errorf("%d attempts, want %d", got, tt.attempts)
			}
		})
	}
}
