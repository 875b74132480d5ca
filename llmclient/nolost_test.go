package llmclient_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/internal/sdkerr"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// faultMatrix is every fault kind llmtest can inject, each as the only behaviour of
// the primary.
func faultMatrix() map[string]llmtest.Fault {
	return map[string]llmtest.Fault{
		"429 retry-after":          llmtest.Status(429).WithRetryAfter(2*time.Second, llmtest.RetryAfterSeconds),
		"429 retry-after date":     llmtest.Status(429).WithRetryAfter(3*time.Second, llmtest.RetryAfterDate),
		"429 retry-after-ms":       llmtest.Status(429).WithRetryAfter(1500*time.Millisecond, llmtest.RetryAfterMillis),
		"500":                      llmtest.Status(500),
		"502":                      llmtest.Status(502),
		"503":                      llmtest.Status(503),
		"504":                      llmtest.Status(504),
		"envoy overflow":           llmtest.EnvoyOverflow(),
		"envoy no healthy":         llmtest.EnvoyNoHealthyUpstream(),
		"envoy connect failure":    llmtest.EnvoyConnectFailure(),
		"envoy upstream timeout":   llmtest.EnvoyUpstreamTimeout(),
		"reset before headers":     llmtest.Reset(),
		"reset after 2 chunks":     llmtest.ResetAfter(2),
		"stall before headers":     llmtest.StallBeforeHeaders(0),
		"stall before first chunk": llmtest.StallBeforeFirstChunk(0),
		"stall after 2 chunks":     llmtest.StallAfter(2, 0),
		"error event":              llmtest.ErrorEvent(0),
		"error event after 2":      llmtest.ErrorEvent(2),
		"malformed json":           llmtest.MalformedJSON(1),
		"oversized":                llmtest.Oversized(2 << 20),
		"mesh retried 503":         llmtest.Status(503).WithEnvoyHeaders(3*time.Millisecond, 3),
	}
}

// TestNoLostCalls: under every fault kind, streamed or not, with or without a
// fallback, every call ends as a success, a marked fallback or a typed error, before
// its deadline plus a small slack.
func TestNoLostCalls(t *testing.T) {
	const deadline = 45 * time.Second
	const slack = 100 * time.Millisecond
	for name, f := range faultMatrix() {
		for _, stream := range []bool{false, true} {
			for _, withFallback := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/stream=%v/fallback=%v", name, stream, withFallback), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						cfg := llmclient.Config{MaxResponseBytes: 1 << 20, Routes: llmclient.DefaultRoutes()}
						cfg.Routes[0].Stream = llmclient.StreamPolicy{FirstTokenTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
						cfg.Routes[0].Policy.PerTryTimeout = 10 * time.Second
						var local *llmtest.Server
						if withFallback {
							local = llmtest.NewUnstartedServer(llmtest.WithChunks(2, "local "))
							defer local.Close()
							cfg.Fallback = fallbackConfig(t, local).Fallback
						}
						e, done := newEnv(t, cfg, llmtest.WithChunks(4, "ok "))
						defer done()
						e.srv.SetRules(llmtest.Rule{Fault: f})

						ctx, cancel := context.WithTimeout(context.Background(), deadline)
						defer cancel()
						start := time.Now()
						var err error
						var servedBy string
						if stream {
							res := readStream(ctx, e.client, chatReq(true))
							err = res.openErr
							if err == nil {
								err = res.err
								servedBy = res.header.Get(fallback.HeaderFallback)
							}
						} else {
							var resp openai.ChatCompletionResponse
							resp, err = e.client.CreateChatCompletion(ctx, chatReq(false))
							servedBy = resp.Header().Get(fallback.HeaderFallback)
						}
						if took := time.Since(start); took > deadline+slack {
							t.Errorf("call took %v, past its %v deadline", took, deadline)
						}
						switch {
						case err == nil && servedBy != "":
							if !withFallback {
								t.Errorf("marked as served by %q without a fallback", servedBy)
							}
						case err == nil:
							// A success: the fault was retried away or struck after content
							// in a way the caller's decoder accepts.
						case sdkerr.Kind(err) == "":
							t.Errorf("untyped error %T: %v", err, err)
						}
						assertNoSecret(t, name, err)
					})
				})
			}
		}
	}
}
