package llmclient_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

func TestChatNonStreamedUsage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, done := newEnv(t, llmclient.Config{}, llmtest.WithChunks(5, "tok "))
		defer done()
		resp, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
		if err != nil {
			t.Fatal(err)
		}
		wantIn := llmtest.ChatPromptTokens("hello there")
		if resp.Usage.PromptTokens != wantIn || resp.Usage.CompletionTokens != 5 || resp.Usage.TotalTokens != wantIn+5 {
			t.Errorf("usage %+v, want prompt %d completion 5", resp.Usage, wantIn)
		}
		if resp.Choices[0].Message.Content == "" || resp.Model != "gpt-4o-mini" {
			t.Errorf("response %+v", resp)
		}
	})
}

func TestRetryReplaysBodyExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, done := newEnv(t, llmclient.Config{})
		defer done()
		e.srv.Enqueue(llmtest.Status(503))
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
			t.Fatal(err)
		}
		reqs := e.srv.Requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want 2 (one retry)", len(reqs))
		}
		if string(reqs[0].Body) != string(reqs[1].Body) || len(reqs[0].Body) == 0 {
			t.Errorf("retry body differs:\n%s\n%s", reqs[0].Body, reqs[1].Body)
		}
		if reqs[1].Header.Get("Authorization") != "Bearer "+secretKey {
			t.Errorf("retry lost the Authorization header")
		}
	})
}

func TestRetryAfterHonoured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, done := newEnv(t, llmclient.Config{})
		defer done()
		e.srv.Enqueue(llmtest.Status(429).WithRetryAfter(7*time.Second, llmtest.RetryAfterSeconds))
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
			t.Fatal(err)
		}
		reqs := e.srv.Requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want 2", len(reqs))
		}
		if gap := reqs[1].Time.Sub(reqs[0].Time); gap < 7*time.Second {
			t.Errorf("retried after %v, before the 7s Retry-After", gap)
		}
	})
}

func TestErrorObjectIn200IsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		routes := llmclient.DefaultRoutes()
		routes[0].Policy.MaxAttempts = 1
		routes[0].Policy.MinimumCalls = 3
		routes[0].Policy.WindowSize = 3
		e, done := newEnv(t, llmclient.Config{Routes: routes}, llmtest.WithRules(llmtest.Rule{Fault: llmtest.Fault{Kind: llmtest.KindErrorEvent}}))
		defer done()
		for i := range 3 {
			// go-openai decodes the error object of the 200 into its own error type, with
			// the status of its class (overloaded: 503).
			_, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
			var ae *openai.APIError
			if !errors.As(err, &ae) || ae.HTTPStatusCode != http.StatusServiceUnavailable || ae.Message != "Overloaded" {
				t.Fatalf("call %d: err = %v, want go-openai's *APIError with status 503", i, err)
			}
			assertNoSecret(t, "in-body", err)
		}
		if st := e.tr.State("/v1/chat/completions", "llmtest.invalid"); st != breaker.StateOpen {
			t.Errorf("breaker %v after three 200s with error objects, want open", st)
		}
		_, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
		if !errors.Is(err, breaker.ErrOpen) {
			t.Errorf("err = %v, want ErrOpen", err)
		}
	})
}

func TestNoRetryWhenMeshRetriedOrNoHealthyUpstream(t *testing.T) {
	for name, f := range map[string]llmtest.Fault{
		"mesh retried":        llmtest.Status(503).WithEnvoyHeaders(5*time.Millisecond, 3),
		"no healthy upstream": llmtest.EnvoyNoHealthyUpstream(),
		"client error":        llmtest.Status(400),
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, done := newEnv(t, llmclient.Config{})
				defer done()
				e.srv.Enqueue(f)
				_, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
				if err == nil {
					t.Fatal("call succeeded")
				}
				if n := len(e.srv.Requests()); n != 1 {
					t.Errorf("%d requests, want 1 (no retry)", n)
				}
			})
		})
	}
}

func TestEmbeddingsRouteHasThreeAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, done := newEnv(t, llmclient.Config{})
		defer done()
		e.srv.SetRules(llmtest.Rule{Fault: llmtest.Status(502)})
		_, err := e.client.CreateEmbeddings(context.Background(), openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: []string{"a"}})
		var api *openai.APIError
		if !errors.As(err, &api) || api.HTTPStatusCode != 502 {
			t.Fatalf("err = %v, want the upstream's 502 decoded by go-openai", err)
		}
		if n := len(e.srv.Requests()); n != 3 {
			t.Errorf("%d attempts, want 3 on the embeddings route", n)
		}
		e.srv.SetRules()
		if _, err := e.client.CreateEmbeddings(context.Background(), openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: []string{"a"}}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPerTryTimeoutCountsAgainstOverall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		routes := llmclient.DefaultRoutes()
		e, done := newEnv(t, llmclient.Config{Routes: routes})
		defer done()
		e.srv.Enqueue(llmtest.StallBeforeHeaders(0))
		start := time.Now()
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
			t.Fatal(err)
		}
		// First try stalls to the 150 s per-try limit, then the retry answers.
		if took := time.Since(start); took < 150*time.Second || took > 160*time.Second {
			t.Errorf("took %v, want the 150 s per-try timeout plus a backoff", took)
		}
	})
}

func TestStreamUsageInjectedAndHidden(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, done := newEnv(t, llmclient.Config{}, llmtest.WithChunks(4, "x "))
		defer done()
		res := readStream(context.Background(), e.client, chatReq(true))
		if res.err != nil || res.openErr != nil {
			t.Fatal(res.err, res.openErr)
		}
		if res.usage != nil {
			t.Errorf("caller who did not ask for usage got a usage chunk: %+v", res.usage)
		}
		if res.content != "x x x x " {
			t.Errorf("content %q", res.content)
		}
		body := requestBodies(t, e.srv, "/v1/chat/completions")[0]
		so, _ := body["stream_options"].(map[string]any)
		if so["include_usage"] != true {
			t.Errorf("upstream request lacks include_usage: %v", body)
		}

		// stream_options present without include_usage: re-encoded with it.
		req := chatReq(true)
		req.StreamOptions = &openai.StreamOptions{}
		res = readStream(context.Background(), e.client, req)
		if res.err != nil || res.usage != nil {
			t.Errorf("empty stream_options: err %v, usage %+v", res.err, res.usage)
		}
		so, _ = requestBodies(t, e.srv, "/v1/chat/completions")[1]["stream_options"].(map[string]any)
		if so["include_usage"] != true {
			t.Errorf("empty stream_options not completed: %v", so)
		}

		req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
		res = readStream(context.Background(), e.client, req)
		if res.err != nil || res.usage == nil || res.usage.CompletionTokens != 4 {
			t.Errorf("caller who asked for usage: err %v usage %+v", res.err, res.usage)
		}
	})
}

func TestStreamRetriedBeforeFirstContent(t *testing.T) {
	for name, f := range map[string]llmtest.Fault{
		"first-token stall":    llmtest.StallBeforeFirstChunk(0),
		"error event":          llmtest.ErrorEvent(0),
		"503":                  llmtest.Status(503),
		"reset":                llmtest.Reset(),
		"reset before content": llmtest.ResetAfter(0),
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				routes := llmclient.DefaultRoutes()
				routes[0].Stream.FirstTokenTimeout = 5 * time.Second
				e, done := newEnv(t, llmclient.Config{Routes: routes}, llmtest.WithChunks(3, "ok "))
				defer done()
				e.srv.Enqueue(f)
				res := readStream(context.Background(), e.client, chatReq(true))
				if res.openErr != nil || res.err != nil {
					t.Fatalf("open %v, read %v", res.openErr, res.err)
				}
				if res.content != "ok ok ok " {
					t.Errorf("content %q: the failed attempt leaked into the stream", res.content)
				}
				if n := len(e.srv.Requests()); n != 2 {
					t.Errorf("%d requests, want 2", n)
				}
			})
		})
	}
}

func TestStreamNotRetriedAfterContent(t *testing.T) {
	for name, tc := range map[string]struct {
		fault llmtest.Fault
		cause error
	}{
		"reset":       {llmtest.ResetAfter(2), llmclient.ErrStreamBroken},
		"error event": {llmtest.ErrorEvent(2), nil},
		"idle stall":  {llmtest.StallAfter(2, 0), llmclient.ErrIdleTimeout},
		"malformed":   {llmtest.MalformedJSON(2), llmclient.ErrMalformedResponse},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				routes := llmclient.DefaultRoutes()
				routes[0].Stream.IdleTimeout = 3 * time.Second
				e, done := newEnv(t, llmclient.Config{Routes: routes}, llmtest.WithChunks(5, "ok "))
				defer done()
				e.srv.Enqueue(tc.fault)
				start := time.Now()
				res := readStream(context.Background(), e.client, chatReq(true))
				var se *llmclient.StreamError
				if !errors.As(res.err, &se) {
					t.Fatalf("err = %v (open %v), want *StreamError", res.err, res.openErr)
				}
				if se.Chunks < 2 || res.content != "ok ok " {
					t.Errorf("delivered %d chunks, content %q", se.Chunks, res.content)
				}
				if tc.cause != nil && !errors.Is(res.err, tc.cause) {
					t.Errorf("err = %v, want %v", res.err, tc.cause)
				}
				if n := len(e.srv.Requests()); n != 1 {
					t.Errorf("%d requests: a stream was retried after content", n)
				}
				if tc.cause == llmclient.ErrIdleTimeout {
					if took := time.Since(start); took > 3*time.Second+100*time.Millisecond {
						t.Errorf("stalled stream ended after %v, want within the 3 s idle timeout", took)
					}
				}
			})
		})
	}
}

func TestLongStreamNotCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		routes := llmclient.DefaultRoutes()
		routes[0].Policy.Timeout = 2 * time.Second
		routes[0].Policy.PerTryTimeout = time.Second
		routes[0].Stream.IdleTimeout = 500 * time.Millisecond
		e, done := newEnv(t, llmclient.Config{Routes: routes},
			llmtest.WithChunks(100, "t "), llmtest.WithChunkInterval(llmtest.Fixed(200*time.Millisecond)))
		defer done()
		start := time.Now()
		res := readStream(context.Background(), e.client, chatReq(true))
		if res.err != nil || res.openErr != nil {
			t.Fatalf("stream cut: %v %v", res.err, res.openErr)
		}
		if took := time.Since(start); took < 19*time.Second {
			t.Errorf("stream took %v; expected about 20 s of chunks", took)
		}
		if res.chunks < 100 {
			t.Errorf("%d chunks received, want all 100", res.chunks)
		}
	})
}

func TestMaxStreamDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		routes := llmclient.DefaultRoutes()
		routes[0].Stream.MaxStreamDuration = 3 * time.Second
		e, done := newEnv(t, llmclient.Config{Routes: routes},
			llmtest.WithChunks(100, "t "), llmtest.WithChunkInterval(llmtest.Fixed(200*time.Millisecond)))
		defer done()
		res := readStream(context.Background(), e.client, chatReq(true))
		if !errors.Is(res.err, llmclient.ErrMaxStreamDuration) {
			t.Fatalf("err = %v, want ErrMaxStreamDuration", res.err)
		}
	})
}

func fallbackConfig(t *testing.T, local *llmtest.Server) llmclient.Config {
	t.Helper()
	ep, err := fallback.NewEndpoint(fallback.EndpointConfig{Name: "local", BaseURL: llmtest.InMemoryURL + "/v1", Model: "llama3.2", Transport: local.Transport()})
	if err != nil {
		t.Fatal(err)
	}
	return llmclient.Config{Fallback: fallback.Config{Targets: []fallback.Target{ep}}}
}

func TestFallbackTriggers(t *testing.T) {
	cases := map[string]struct {
		fault    llmtest.Fault
		stream   bool
		requests int // reaching the primary
	}{
		"no healthy upstream":        {llmtest.EnvoyNoHealthyUpstream(), false, 1},
		"retries exhausted":          {llmtest.Status(503), false, 2},
		"overloaded":                 {llmtest.EnvoyOverflow(), false, 2},
		"first-token timeout":        {llmtest.StallBeforeFirstChunk(0), true, 2},
		"stream no healthy upstream": {llmtest.EnvoyNoHealthyUpstream(), true, 1},
		"error events exhausted":     {llmtest.ErrorEvent(0), true, 2},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				local := llmtest.NewUnstartedServer(llmtest.WithChunks(2, "local "))
				defer local.Close()
				cfg := fallbackConfig(t, local)
				cfg.Routes = llmclient.DefaultRoutes()
				cfg.Routes[0].Stream.FirstTokenTimeout = 2 * time.Second
				e, done := newEnv(t, cfg)
				defer done()
				e.srv.SetRules(llmtest.Rule{Fault: tc.fault})
				var header http.Header
				var content string
				if tc.stream {
					res := readStream(context.Background(), e.client, chatReq(true))
					if res.err != nil || res.openErr != nil {
						t.Fatal(res.err, res.openErr)
					}
					header, content = res.header, res.content
				} else {
					resp, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
					if err != nil {
						t.Fatal(err)
					}
					header, content = resp.Header(), resp.Choices[0].Message.Content
				}
				if header.Get(fallback.HeaderFallback) != "local" || content != "local local " {
					t.Errorf("not served by the fallback: header %q content %q", header.Get(fallback.HeaderFallback), content)
				}
				if n := len(e.srv.Requests()); n != tc.requests {
					t.Errorf("%d requests reached the primary, want %d", n, tc.requests)
				}
				lr := local.Requests()
				if len(lr) != 1 {
					t.Fatalf("%d fallback requests", len(lr))
				}
				if lr[0].Header.Get("Authorization") != "" {
					t.Errorf("the primary's key reached the fallback")
				}
				body := requestBodies(t, local, "/v1/chat/completions")[0]
				if body["model"] != "llama3.2" {
					t.Errorf("fallback model %v, want llama3.2", body["model"])
				}
			})
		})
	}
}

func TestNoFallbackOnClientOrAuthError(t *testing.T) {
	for _, code := range []int{400, 401} {
		synctest.Test(t, func(t *testing.T) {
			local := llmtest.NewUnstartedServer()
			defer local.Close()
			e, done := newEnv(t, fallbackConfig(t, local))
			defer done()
			e.srv.Enqueue(llmtest.Status(code))
			_, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
			var api *openai.APIError
			if !errors.As(err, &api) || api.HTTPStatusCode != code {
				t.Errorf("status %d: err = %v, want go-openai's APIError", code, err)
			}
			if n := len(local.Requests()); n != 0 {
				t.Errorf("status %d went to the fallback", code)
			}
		})
	}
}

func TestBreakerOpensThenFallsBackThenRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local := llmtest.NewUnstartedServer()
		defer local.Close()
		cfg := fallbackConfig(t, local)
		cfg.Routes = llmclient.DefaultRoutes()
		p := &cfg.Routes[0].Policy
		p.WindowSize, p.MinimumCalls, p.OpenDuration, p.HalfOpenCalls, p.MaxAttempts = 4, 4, 10*time.Second, 1, 1
		e, done := newEnv(t, cfg)
		defer done()
		e.srv.SetRules(llmtest.Rule{Fault: llmtest.Status(500)})
		for range 4 {
			if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
				t.Fatal(err)
			}
		}
		if st := e.tr.State("/v1/chat/completions", "llmtest.invalid"); st != breaker.StateOpen {
			t.Fatalf("breaker %v, want open", st)
		}
		before := len(e.srv.Requests())
		resp, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
		if err != nil || resp.Header().Get(fallback.HeaderFallback) != "local" {
			t.Fatalf("open breaker: err %v header %v", err, resp.Header())
		}
		if len(e.srv.Requests()) != before {
			t.Errorf("an open breaker let a call reach the primary")
		}
		e.srv.SetRules()
		time.Sleep(10 * time.Second)
		resp, err = e.client.CreateChatCompletion(context.Background(), chatReq(false))
		if err != nil || resp.Header().Get(fallback.HeaderFallback) != "" {
			t.Fatalf("half-open trial: err %v fallback %q", err, resp.Header().Get(fallback.HeaderFallback))
		}
		if st := e.tr.State("/v1/chat/completions", "llmtest.invalid"); st != breaker.StateClosed {
			t.Errorf("breaker %v after a good trial call, want closed", st)
		}
	})
}

func TestContextLengthTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := llmclient.Config{Fallback: fallback.Config{
			Targets:       []fallback.Target{fallback.Static("static", "busy")},
			ContextLength: fallback.Static("long-context", "summarised"),
		}}
		e, done := newEnv(t, cfg)
		defer done()
		f := llmtest.Status(400)
		f.Code, f.Message = "context_length_exceeded", "This model's maximum context length is 128000 tokens."
		e.srv.Enqueue(f)
		resp, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header().Get(fallback.HeaderFallback) != "long-context" || resp.Choices[0].Message.Content != "summarised" {
			t.Errorf("served by %q: %q", resp.Header().Get(fallback.HeaderFallback), resp.Choices[0].Message.Content)
		}
	})
}

func TestPerHostBreakers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		routes := llmclient.DefaultRoutes()
		p := &routes[0].Policy
		p.WindowSize, p.MinimumCalls, p.MaxAttempts = 2, 2, 1
		e, done := newEnv(t, llmclient.Config{Routes: routes})
		defer done()
		e.srv.SetRules(llmtest.Rule{Fault: llmtest.Status(500)})
		for range 2 {
			_, _ = e.client.CreateChatCompletion(context.Background(), chatReq(false))
		}
		if e.tr.State("/v1/chat/completions", "llmtest.invalid") != breaker.StateOpen {
			t.Fatal("breaker did not open")
		}
		if e.tr.State("/v1/chat/completions", "other.invalid") != breaker.StateClosed {
			t.Error("another host shares the breaker")
		}
		if e.tr.State("/v1/embeddings", "llmtest.invalid") != breaker.StateClosed {
			t.Error("another route shares the breaker")
		}
		e.srv.SetRules()
		if _, err := e.client.CreateEmbeddings(context.Background(), openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: "x"}); err != nil {
			t.Errorf("embeddings blocked by the chat breaker: %v", err)
		}
	})
}

func TestSecretNeverInErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, done := newEnv(t, llmclient.Config{})
		defer done()
		f := llmtest.Status(401)
		f.Message = "Incorrect API key provided: " + secretKey + ". You can find your API key at ..."
		e.srv.Enqueue(f)
		_, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
		if err == nil {
			t.Fatal("401 succeeded")
		}
		// go-openai decodes the upstream body itself; infermesh's own errors must not
		// carry it. The in-body path is infermesh's.
		f = llmtest.Fault{Kind: llmtest.KindErrorEvent, Message: "bad key " + secretKey}
		e.srv.SetRules(llmtest.Rule{Fault: f})
		_, err = e.client.CreateChatCompletion(context.Background(), chatReq(false))
		if err == nil {
			t.Fatal("error object succeeded")
		}
		assertNoSecret(t, "in-body error", err)
	})
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []llmclient.Config{
		{MaxRequestBytes: -1},
		{MaxResponseBytes: -1},
		{Routes: []llmclient.Route{{Prefix: "v1/chat"}}},
		{Routes: []llmclient.Route{{Prefix: "/v1/x", Stream: llmclient.StreamPolicy{IdleTimeout: -time.Second}}}},
		{Routes: []llmclient.Route{{Prefix: "/v1/x", Policy: breaker.Config{FailureRate: 150}}}},
	} {
		if _, err := llmclient.NewHTTPClient(cfg); err == nil {
			t.Errorf("NewHTTPClient(%+v) accepted an invalid config", cfg)
		}
	}
	_, err := llmclient.NewHTTPClient(llmclient.Config{Routes: []llmclient.Route{{Prefix: "/v1/x", Policy: breaker.Config{FailureRate: 150}}}})
	if err == nil || !contains(err.Error(), "FailureRate") || !contains(err.Error(), "150") {
		t.Errorf("error %v does not name the field and value", err)
	}
}

func TestTooLittleDeadlineGoesStraightToFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local := llmtest.NewUnstartedServer()
		defer local.Close()
		e, done := newEnv(t, fallbackConfig(t, local))
		defer done()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		resp, err := e.client.CreateChatCompletion(ctx, chatReq(false))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header().Get(fallback.HeaderFallback) != "local" || len(e.srv.Requests()) != 0 {
			t.Errorf("fallback %q, primary requests %d; want the fallback only", resp.Header().Get(fallback.HeaderFallback), len(e.srv.Requests()))
		}
	})
}

// TestCacheRecordsAndServes: good replies, streamed or not, are stored, and the cache
// answers them (marked degraded) when the primary is out.
func TestCacheRecordsAndServes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cache, err := fallback.NewCache(fallback.CacheConfig{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := llmclient.Config{Cache: cache, Fallback: fallback.Config{Targets: []fallback.Target{cache}}}
		e, done := newEnv(t, cfg, llmtest.WithChunks(3, "good "))
		defer done()
		stream := chatReq(true)
		stream.Messages[0].Content = "streamed question"
		if res := readStream(context.Background(), e.client, stream); res.err != nil || res.openErr != nil {
			t.Fatal(res.err, res.openErr)
		}
		if _, err := e.client.CreateChatCompletion(context.Background(), chatReq(false)); err != nil {
			t.Fatal(err)
		}
		if cache.Len() != 2 {
			t.Fatalf("cache holds %d replies, want 2", cache.Len())
		}
		e.srv.SetRules(llmtest.Rule{Fault: llmtest.EnvoyNoHealthyUpstream()})
		resp, err := e.client.CreateChatCompletion(context.Background(), chatReq(false))
		if err != nil || resp.Choices[0].Message.Content != "good good good " || resp.Header().Get(fallback.HeaderDegraded) != "cache" {
			t.Fatalf("from cache: err %v, choices %+v, header %v", err, resp.Choices, resp.Header())
		}
		// The streamed answer comes back as a stream, put together from its chunks.
		res := readStream(context.Background(), e.client, stream)
		if res.err != nil || res.openErr != nil || res.content != "good good good " || res.header.Get(fallback.HeaderFallback) != "cache" {
			t.Fatalf("stream from cache: %v %v %q %v", res.err, res.openErr, res.content, res.header)
		}
	})
}
