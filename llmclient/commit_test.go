package llmclient_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infermesh/infermesh/llmclient"
)

// TestStreamRetriedBeforeCommit: a stream that breaks, is truncated or reports an error
// before its commit point (its first output) is sent again, and the caller sees one
// clean event sequence: never two response.created, never the failed attempt's events.
func TestStreamRetriedBeforeCommit(t *testing.T) {
	hc, err := llmclient.NewHTTPClient(fastRetries(llmclient.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	// Responses streams commit at events[4], chat streams at events[1].
	for _, f := range []struct {
		name        string
		fault, chat fault
	}{
		{"cut", fault{cutAfter: 2, truncate: -1}, fault{cutAfter: 1, truncate: -1}},
		{"truncated", fault{cutAfter: -1, truncate: 3}, fault{cutAfter: -1, truncate: 1}},
		{"error event", fault{cutAfter: -1, truncate: -1, inBody: "server_error"}, fault{cutAfter: -1, truncate: -1, inBody: "server_error"}},
	} {
		for _, mk := range []func(string, *http.Client) sdk{goOpenAI, openAIGo} {
			u := newUpstream(t, f.fault)
			s := mk(u.URL+"/v1", hc)
			res := s.responsesStream(context.Background())
			if res.err != nil || strings.Join(res.events, ",") != strings.Join(responsesSequence, ",") {
				t.Errorf("%s, %s responses: err %v, events %v", f.name, s.name, res.err, res.events)
			}
			if n := u.hits("/v1/responses"); n != 2 {
				t.Errorf("%s, %s responses: %d upstream requests, want 2", f.name, s.name, n)
			}
			u = newUpstream(t, f.chat)
			s = mk(u.URL+"/v1", hc)
			res = s.chatStream(context.Background())
			if res.err != nil || res.text != "Hello there" {
				t.Errorf("%s, %s chat: err %v, text %q", f.name, s.name, res.err, res.text)
			}
			if n := u.hits("/v1/chat/completions"); n != 2 {
				t.Errorf("%s, %s chat: %d upstream requests, want 2", f.name, s.name, n)
			}
		}
	}
}

// TestStreamNotResentAfterCommit: once output has reached the caller, a cut or a
// truncation ends the stream with a typed *StreamError, and nothing is sent again.
func TestStreamNotResentAfterCommit(t *testing.T) {
	hc, err := llmclient.NewHTTPClient(llmclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.CloseIdleConnections()
	// Both cut after two deltas: Responses events[4:6], chat events[1:3].
	for _, f := range []struct {
		name        string
		fault, chat fault
		cause       error
	}{
		{"cut", fault{cutAfter: 6, truncate: -1}, fault{cutAfter: 3, truncate: -1}, llmclient.ErrStreamBroken},
		{"truncated", fault{cutAfter: -1, truncate: 6}, fault{cutAfter: -1, truncate: 3}, llmclient.ErrStreamTruncated},
	} {
		for _, mk := range []func(string, *http.Client) sdk{goOpenAI, openAIGo} {
			for _, kind := range []string{"responses", "chat"} {
				ff, path := f.fault, "/v1/responses"
				if kind == "chat" {
					ff, path = f.chat, "/v1/chat/completions"
				}
				u := newUpstream(t, ff)
				s := mk(u.URL+"/v1", hc)
				run := s.responsesStream
				if kind == "chat" {
					run = s.chatStream
				}
				res := run(context.Background())
				var se *llmclient.StreamError
				if !errors.As(res.err, &se) || !errors.Is(res.err, f.cause) || se.Chunks < 1 {
					t.Errorf("%s, %s %s: err %v, want a *StreamError with %v", f.name, s.name, kind, res.err, f.cause)
				}
				if res.text != "Hello " {
					t.Errorf("%s, %s %s: delivered %q", f.name, s.name, kind, res.text)
				}
				if n := u.hits(path); n != 1 {
					t.Errorf("%s, %s %s: %d upstream requests after output: a stream was sent again", f.name, s.name, kind, n)
				}
			}
		}
	}
}

// pipeTransport answers one streamed request with whatever the test writes to w,
// event by event, so the test sees exactly when the caller gets each one.
type pipeTransport struct {
	contentType string
	r           *io.PipeReader
}

func (p pipeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, req.Body)
	_ = req.Body.Close()
	h := http.Header{}
	if p.contentType != "" {
		h.Set("Content-Type", p.contentType)
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: p.r, ContentLength: -1, Request: req}, nil
}

// TestFirstDeltaNotHeldBack: the commit point holds back only the events before the
// first output, so the caller gets the first delta as soon as it arrives, with no
// later event needed: the time to first delta is not delayed by more than one event.
func TestFirstDeltaNotHeldBack(t *testing.T) {
	pr, pw := io.Pipe()
	hc, err := llmclient.NewHTTPClient(llmclient.Config{Base: pipeTransport{"text/event-stream", pr}})
	if err != nil {
		t.Fatal(err)
	}
	events := responsesEvents("")
	go func() {
		// Everything up to and including the first delta; the rest only when the
		// caller has seen it.
		for _, ev := range events[:5] {
			fmt.Fprintf(pw, "event: %s\ndata: %s\n\n", ev.name, ev.data)
		}
	}()
	resp, err := hc.Post("http://up.invalid/v1/responses", "application/json", strings.NewReader(`{"model":"m","input":"hi","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	seen := 0
	for seen < 5 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			seen++
		}
	}
	if seen != 5 || !strings.Contains(sc.Text(), "response.output_text.delta") {
		t.Fatalf("the caller got %d events before the upstream sent a sixth, the last %q", seen, sc.Text())
	}
	go func() {
		for _, ev := range events[5:] {
			fmt.Fprintf(pw, "event: %s\ndata: %s\n\n", ev.name, ev.data)
		}
		pw.Close()
	}()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !strings.Contains(string(rest), "response.completed") {
		t.Fatalf("rest of the stream: %v %q", err, rest)
	}
}

// TestResponseIncompleteDeliveredAsSent: a Responses stream that ends with
// response.incomplete (cut by max_output_tokens) is a real answer, not an error.
func TestResponseIncompleteDeliveredAsSent(t *testing.T) {
	pr, pw := io.Pipe()
	hc, err := llmclient.NewHTTPClient(llmclient.Config{Base: pipeTransport{"text/event-stream", pr}})
	if err != nil {
		t.Fatal(err)
	}
	events := responsesEvents("")
	last := events[len(events)-1]
	last.name = "response.incomplete"
	last.data = strings.Replace(strings.Replace(last.data, `"response.completed"`, `"response.incomplete"`, 1), `"status":"completed"`, `"status":"incomplete"`, 1)
	events[len(events)-1] = last
	go func() {
		for _, ev := range events {
			fmt.Fprintf(pw, "event: %s\ndata: %s\n\n", ev.name, ev.data)
		}
		pw.Close()
	}()
	resp, err := hc.Post("http://up.invalid/v1/responses", "application/json", strings.NewReader(`{"model":"m","input":"hi","stream":true,"max_output_tokens":3}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(body), "event: response.incomplete") {
		t.Fatalf("err %v, body %q", err, body)
	}
}

// TestStreamRecognisedByRequest: a stream served without text/event-stream (no
// content type, or newline-delimited JSON) gets the stream policy too: it is read as
// it arrives, and a stall ends within the idle timeout instead of hanging.
func TestStreamRecognisedByRequest(t *testing.T) {
	for _, ct := range []string{"", "application/x-ndjson"} {
		pr, pw := io.Pipe()
		cfg := llmclient.Config{Base: pipeTransport{ct, pr}}
		cfg.Route("chat").Stream.IdleTimeout = 200 * time.Millisecond
		hc, err := llmclient.NewHTTPClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		events := chatEvents(false, "", false)
		go func() {
			for _, ev := range events[:3] {
				if ct == "" {
					fmt.Fprintf(pw, "data: %s\n\n", ev.data)
				} else {
					fmt.Fprintf(pw, "%s\n", ev.data)
				}
			}
			// Then the upstream stalls, and never ends the stream.
		}()
		start := time.Now()
		resp, err := hc.Post("http://up.invalid/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","stream":true}`))
		if err != nil {
			t.Fatalf("%q: %v", ct, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		pw.Close()
		if !errors.Is(err, llmclient.ErrIdleTimeout) || !strings.Contains(string(body), "Hel") {
			t.Errorf("%q: err %v after %q, want the idle timeout", ct, err, body)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("%q: a stalled stream took %v", ct, took)
		}
	}
}

// fastRetries shortens the default routes' backoff so that tests over real sockets wait
// milliseconds, not seconds, between attempts.
func fastRetries(cfg llmclient.Config) llmclient.Config {
	for _, name := range []string{"chat", "responses", "completions", "embeddings", "default"} {
		cfg.Route(name).Policy.Backoff.Initial = 10 * time.Millisecond
		cfg.Route(name).Policy.Backoff.Max = 50 * time.Millisecond
	}
	return cfg
}
