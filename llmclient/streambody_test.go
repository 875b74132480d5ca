package llmclient_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infermesh/infermesh/llmclient"
)

// sseStream is an OpenAI stream whose content chunks say word, n times.
func sseStream(word string, n int) string {
	var s strings.Builder
	for i := range n {
		fmt.Fprintf(&s, "data: {\"id\":\"c-%s\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s%d\"},\"finish_reason\":null}]}\n\n", word, word, i)
	}
	fmt.Fprintf(&s, "data: {\"id\":\"c-%s\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", word)
	return s.String()
}

// streamTransport answers every request with a stream whose body next returns.
type streamTransport struct{ next func() io.ReadCloser }

func (t streamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, req.Body)
	_ = req.Body.Close()
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/event-stream"}},
		Body:   t.next(), ContentLength: -1, Request: req,
	}, nil
}

func postStream(t *testing.T, hc *http.Client) *http.Response {
	t.Helper()
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := hc.Post("http://127.0.0.1:1/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// A stream closed before its end gives its buffers back for the next stream: a Read
// after Close must then return an error, never bytes (which could be another
// stream's), and the next stream must read as its own.
func TestStreamReadAfterCloseAndReuse(t *testing.T) {
	words := []string{"alpha", "beta", "gamma", "delta"}
	i := 0
	hc, err := llmclient.NewHTTPClient(llmclient.Config{Base: streamTransport{next: func() io.ReadCloser {
		w := words[i%len(words)]
		i++
		return io.NopCloser(strings.NewReader(sseStream(w, 40)))
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for round, w := range words {
		resp := postStream(t, hc)
		if round%2 == 0 {
			// Read part of it, then close it early.
			buf := make([]byte, 64)
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				t.Fatalf("stream %d: %v", round, err)
			}
			resp.Body.Close()
			if n, err := resp.Body.Read(buf); n != 0 || err == nil {
				t.Fatalf("stream %d: Read after Close = %d, %v; want 0 and an error", round, n, err)
			}
			continue
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("stream %d: %v", round, err)
		}
		if want := sseStream(w, 40); !bytes.Equal(got, []byte(want)) {
			t.Fatalf("stream %d read %d bytes, not its own %d:\n%.300s", round, len(got), len(want), got)
		}
		if n, err := resp.Body.Read(make([]byte, 8)); n != 0 || err == nil {
			t.Fatalf("stream %d: Read after the end and Close = %d, %v; want 0 and an error", round, n, err)
		}
	}
}

// Close from another goroutine ends a Read that waits for the next event; the
// Read returns an error and the stream's buffers are not given back while it runs
// (the race detector checks the hand-over).
func TestStreamCloseDuringRead(t *testing.T) {
	for round := range 20 {
		pr, pw := io.Pipe()
		first := sseStream("x", 1)
		first = first[:strings.Index(first, "\n\n")+2] // the first content chunk only
		go func() {
			_, _ = pw.Write([]byte(first))
		}()
		hc, err := llmclient.NewHTTPClient(llmclient.Config{Base: streamTransport{next: func() io.ReadCloser { return pr }}})
		if err != nil {
			t.Fatal(err)
		}
		resp := postStream(t, hc)
		if _, err := io.ReadFull(resp.Body, make([]byte, len(first))); err != nil {
			t.Fatalf("round %d: first chunk: %v", round, err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := resp.Body.Read(make([]byte, 512)) // waits: nothing more was written
			done <- err
		}()
		if round%2 == 1 {
			time.Sleep(time.Millisecond) // sometimes let the Read block first
		}
		resp.Body.Close()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("round %d: Read cut by Close returned no error", round)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Read did not return after Close", round)
		}
		if n, err := resp.Body.Read(make([]byte, 8)); n != 0 || err == nil {
			t.Fatalf("round %d: Read after Close = %d, %v", round, n, err)
		}
		pw.Close()
	}
}
