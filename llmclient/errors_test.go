package llmclient_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	openaigo "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// TestErrorsInTheSDKsOwnTypes: a failure that came from an upstream answer reaches
// go-openai as *openai.APIError and openai-go as *openai.Error, with a status that
// carries the class and the upstream's own message (credentials scrubbed): an error
// object inside a 200, Envoy's plain-text local reply, an error status, an error event
// before a stream's first output. infermesh's facts are in its headers, and
// x-should-retry: false keeps openai-go from retrying what infermesh already judged.
func TestErrorsInTheSDKsOwnTypes(t *testing.T) {
	hc, err := llmclient.NewHTTPClient(fastRetries(llmclient.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	both := func(f fault) []fault { return []fault{f, f} } // every attempt of the route
	for _, tc := range []struct {
		name    string
		faults  []fault
		stream  bool
		status  int
		message string
		class   string
		hits    int
	}{
		{"error object in a 200", both(fault{inBody: "server_error", cutAfter: -1, truncate: -1}), false, 500, "server_error in body", "server_error", 2},
		{"rate limit object in a 200", both(fault{inBody: "rate_limit_error", cutAfter: -1, truncate: -1}), false, 429, "rate_limit_error in body", "rate_limited", 2},
		{"envoy no healthy upstream", []fault{{envoy: "no healthy upstream"}}, false, 503, "no healthy upstream", "unavailable", 1},
		{"envoy upstream timeout", both(fault{envoy: "upstream request timeout"}), false, 504, "upstream request timeout", "timeout", 2},
		{"503", both(fault{status: 503}), false, 503, "upstream said 503", "unavailable", 2},
		{"error event before output", both(fault{inBody: "overloaded_error", cutAfter: -1, truncate: -1}), true, 503, "overloaded_error in stream", "overloaded", 2},
		{"stream 503", both(fault{status: 503}), true, 503, "upstream said 503", "unavailable", 2},
	} {
		// go-openai
		u := newUpstream(t, tc.faults...)
		cfg := openai.DefaultConfig(secretKey)
		cfg.BaseURL = u.URL + "/v1"
		cfg.HTTPClient = hc
		c := openai.NewClientWithConfig(cfg)
		if tc.stream {
			_, err = c.CreateChatCompletionStream(context.Background(), chatReq(true))
		} else {
			_, err = c.CreateChatCompletion(context.Background(), chatReq(false))
		}
		var ae *openai.APIError
		if !errors.As(err, &ae) || ae.HTTPStatusCode != tc.status || ae.Message != tc.message {
			t.Errorf("%s, go-openai: err %T %v, want *openai.APIError %d %q", tc.name, err, err, tc.status, tc.message)
		}
		if n := u.hits("/v1/chat/completions"); n != tc.hits {
			t.Errorf("%s, go-openai: %d upstream requests, want %d", tc.name, n, tc.hits)
		}

		// openai-go, with its default retries on
		u = newUpstream(t, tc.faults...)
		oc := openaigo.NewClient(option.WithHTTPClient(hc), option.WithBaseURL(u.URL+"/v1"), option.WithAPIKey(secretKey))
		var raw *http.Response
		p := openaigo.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openaigo.ChatCompletionMessageParamUnion{openaigo.UserMessage("hi")}}
		if tc.stream {
			s := oc.Chat.Completions.NewStreaming(context.Background(), p, option.WithResponseInto(&raw))
			for s.Next() {
			}
			err = s.Err()
			s.Close()
		} else {
			_, err = oc.Chat.Completions.New(context.Background(), p, option.WithResponseInto(&raw))
		}
		var oe *openaigo.Error
		if !errors.As(err, &oe) || oe.StatusCode != tc.status || oe.Message != tc.message {
			t.Errorf("%s, openai-go: err %T %v, want *openai.Error %d with %q", tc.name, err, err, tc.status, tc.message)
			continue
		}
		if n := u.hits("/v1/chat/completions"); n != tc.hits {
			t.Errorf("%s, openai-go: %d upstream requests, want %d: the SDK multiplied infermesh's attempts", tc.name, n, tc.hits)
		}
		h := oe.Response.Header
		if h.Get(llmclient.HeaderAttempts) != itoa(tc.hits) || h.Get(llmclient.HeaderErrorClass) != tc.class || h.Get("X-Should-Retry") != "false" {
			t.Errorf("%s, openai-go: headers attempts %q class %q should-retry %q", tc.name,
				h.Get(llmclient.HeaderAttempts), h.Get(llmclient.HeaderErrorClass), h.Get("X-Should-Retry"))
		}
		assertNoSecret(t, tc.name, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestResponsesErrorEventClass: a Responses stream's "error" event, which carries its kind
// in its code only, is judged as the same error on a chat stream: an overloaded upstream
// is a 503 of class overloaded.
func TestResponsesErrorEventClass(t *testing.T) {
	srv := llmtest.NewServer()
	defer srv.Close()
	srv.SetRules(llmtest.Rule{Fault: llmtest.ErrorEvent(0)})
	hc, err := llmclient.NewHTTPClient(fastRetries(llmclient.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	oc := openaigo.NewClient(option.WithHTTPClient(hc), option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey(secretKey))
	s := oc.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
		Model: "gpt-4o-mini", Input: responses.ResponseNewParamsInputUnion{OfString: openaigo.String("hi")}})
	for s.Next() {
	}
	err = s.Err()
	s.Close()
	var oe *openaigo.Error
	if !errors.As(err, &oe) || oe.StatusCode != http.StatusServiceUnavailable || oe.Response.Header.Get(llmclient.HeaderErrorClass) != "overloaded" {
		t.Fatalf("err %T %v, want *openai.Error 503 of class overloaded", err, err)
	}
}

// TestOwnDecisionsAreTypedErrors: what infermesh decides on its own stays a Go error
// callers reach with errors.Is: an open breaker with no fallback, the first-token
// timeout, no time left. openai-go retries errors without a response on its own; its
// retries get the same error at once, and the upstream sees no more than infermesh's
// own attempts.
func TestOwnDecisionsAreTypedErrors(t *testing.T) {
	cfg := fastRetries(llmclient.Config{})
	chat := cfg.Route("chat")
	chat.Stream.FirstTokenTimeout = 100 * time.Millisecond
	chat.Policy.WindowSize, chat.Policy.MinimumCalls, chat.Policy.OpenDuration = 2, 2, time.Minute
	hc, err := llmclient.NewHTTPClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	stall := fault{stall: 10 * time.Second, cutAfter: -1, truncate: -1}
	u := newUpstream(t, stall, stall, stall, stall, stall, stall)
	oc := openaigo.NewClient(option.WithHTTPClient(hc), option.WithBaseURL(u.URL+"/v1"), option.WithAPIKey(secretKey))
	p := openaigo.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openaigo.ChatCompletionMessageParamUnion{openaigo.UserMessage("hi")}}

	s := oc.Chat.Completions.NewStreaming(context.Background(), p)
	for s.Next() {
	}
	if err := s.Err(); !errors.Is(err, llmclient.ErrFirstTokenTimeout) {
		t.Fatalf("first-token timeout: err %v", err)
	}
	s.Close()
	if n := u.hits("/v1/chat/completions"); n != 2 {
		t.Errorf("first-token timeout: %d upstream requests with openai-go's retries on, want infermesh's 2", n)
	}
	// The two attempts filled the breaker's window with failures: it is open now.
	s = oc.Chat.Completions.NewStreaming(context.Background(), p)
	for s.Next() {
	}
	if err := s.Err(); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("open breaker: err %v", err)
	}
	s.Close()
	if n := u.hits("/v1/chat/completions"); n != 2 {
		t.Errorf("open breaker: %d upstream requests, want none more", n)
	}

	// go-openai, no time left for the call at all.
	gc := openai.DefaultConfig(secretKey)
	gc.BaseURL = u.URL + "/v1"
	gc.HTTPClient = hc
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	_, err = openai.NewClientWithConfig(gc).CreateEmbeddings(ctx, openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: "x"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no time left: err %v", err)
	}
}
