package llmtest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	openai "github.com/sashabaranov/go-openai"
)

// These tests run under testing/synctest: the server is served in memory and every wait
// runs on the bubble's fake clock, so durations are exact.

// memServer returns an in-memory server closed when the bubble's test ends.
func memServer(t *testing.T, opts ...llmtest.Option) (*llmtest.Server, *openai.Client) {
	srv := llmtest.NewUnstartedServer(opts...)
	t.Cleanup(srv.Close)
	return srv, newOpenAI(srv)
}

func TestStallBeforeFirstChunk(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, c := memServer(t)
		srv.Enqueue(llmtest.StallBeforeFirstChunk(0))
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		s, err := c.CreateChatCompletionStream(ctx, userChat("hi"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if since := time.Since(start); since != 0 {
			t.Errorf("headers came after %v, want at once", since)
		}
		chunks, err := recvAll(s)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error = %v, want the client's deadline", err)
		}
		if since := time.Since(start); since != 5*time.Second {
			t.Errorf("the stall ended after %v, want exactly the 5s deadline", since)
		}
		if len(chunks) != 1 || chunks[0].Choices[0].Delta.Role != "assistant" {
			t.Errorf("chunks before the stall = %+v, want the role chunk only", chunks)
		}
	})
}

func TestStallHeadersOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, c := memServer(t)
		srv.Enqueue(llmtest.Fault{Kind: llmtest.KindStall, HeadersOnly: true, Duration: 2 * time.Second})
		start := time.Now()
		s, err := c.CreateChatCompletionStream(t.Context(), userChat("hi"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		first, err := s.Recv()
		if err != nil || first.Choices[0].Delta.Role != "assistant" {
			t.Fatalf("first chunk %+v, %v", first, err)
		}
		if since := time.Since(start); since != 2*time.Second {
			t.Errorf("role chunk after %v, want 2s", since)
		}
		chunks, err := recvAll(s)
		if !errors.Is(err, io.EOF) || contentChunks(chunks) != llmtest.DefaultChunks {
			t.Errorf("after a bounded stall the stream must finish: %d content chunks, %v", contentChunks(chunks), err)
		}
	})
}

func TestStallBetweenChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, c := memServer(t, llmtest.WithChunkInterval(llmtest.Fixed(10*time.Millisecond)))
		srv.Enqueue(llmtest.StallAfter(3, 0))
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		s, err := c.CreateChatCompletionStream(ctx, userChat("hi"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var lastChunk time.Duration
		n := 0
		for range 10 {
			c, err := s.Recv()
			if err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error = %v, want the deadline", err)
				}
				break
			}
			if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
				n++
				lastChunk = time.Since(start)
			}
		}
		if n != 3 || lastChunk != 30*time.Millisecond {
			t.Errorf("%d content chunks, the last at %v; want 3 at 30ms", n, lastChunk)
		}
		if since := time.Since(start); since != time.Minute {
			t.Errorf("stalled for %v, want until the 1m deadline", since)
		}
	})
}

func TestStallBeforeHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, c := memServer(t)
		srv.Enqueue(llmtest.StallBeforeHeaders(0), llmtest.StallBeforeHeaders(3*time.Second))
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.CreateChatCompletion(ctx, userChat("hi"))
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 10*time.Second {
			t.Errorf("unbounded: error %v after %v; want the deadline after 10s", err, time.Since(start))
		}
		start = time.Now()
		resp, err := c.CreateChatCompletion(t.Context(), userChat("hi"))
		if err != nil || resp.ID != "chatcmpl-2" || time.Since(start) != 3*time.Second {
			t.Errorf("bounded: %q, %v after %v; want an answer after 3s", resp.ID, err, time.Since(start))
		}
	})
}

func TestStallNonStreamedAfterHeaders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, _ := memServer(t)
		srv.Enqueue(llmtest.StallBeforeFirstChunk(0))
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
		defer cancel()
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+llmtest.PathChatCompletions, strings.NewReader(chatBody))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || time.Since(start) != 0 {
			t.Fatalf("status %d after %v; want 200 at once", resp.StatusCode, time.Since(start))
		}
		_, err = io.ReadAll(resp.Body)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 4*time.Second {
			t.Errorf("body read: %v after %v; want the deadline after 4s", err, time.Since(start))
		}
	})
}

func TestLatencyAndChunkInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, c := memServer(t,
			llmtest.WithLatency(llmtest.Fixed(200*time.Millisecond)),
			llmtest.WithChunkInterval(llmtest.Fixed(25*time.Millisecond)),
			llmtest.WithChunks(4, "a "))
		start := time.Now()
		s, err := c.CreateChatCompletionStream(t.Context(), userChat("hi"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if since := time.Since(start); since != 200*time.Millisecond {
			t.Errorf("headers after %v, want 200ms", since)
		}
		var at []time.Duration
		for range 10 {
			c, err := s.Recv()
			if err != nil {
				break
			}
			if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
				at = append(at, time.Since(start))
			}
		}
		want := []time.Duration{225 * time.Millisecond, 250 * time.Millisecond, 275 * time.Millisecond, 300 * time.Millisecond}
		if len(at) != len(want) {
			t.Fatalf("content chunks at %v, want %v", at, want)
		}
		for i := range want {
			if at[i] != want[i] {
				t.Errorf("content chunks at %v, want %v", at, want)
				break
			}
		}
	})
}

func TestSeededLatencyRepeats(t *testing.T) {
	run := func(seed uint64) (out []time.Duration) {
		synctest.Test(t, func(t *testing.T) {
			_, c := memServer(t, llmtest.WithRandomSource(seed), llmtest.WithLatency(llmtest.LogNormal(100*time.Millisecond, 0.5)))
			for range 5 {
				start := time.Now()
				if _, err := c.CreateChatCompletion(t.Context(), userChat("hi")); err != nil {
					t.Fatal(err)
				}
				out = append(out, time.Since(start))
			}
		})
		return out
	}
	a, b, other := run(7), run(7), run(8)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different latencies: %v vs %v", a, b)
		}
		if a[i] <= 0 {
			t.Errorf("latency %v is not positive", a[i])
		}
	}
	same := true
	for i := range a {
		same = same && a[i] == other[i]
	}
	if same {
		t.Errorf("seeds 7 and 8 gave the same latencies %v", a)
	}
}

func TestCloseEndsStallInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, c := memServer(t)
		srv.Enqueue(llmtest.StallBeforeHeaders(0))
		errc := make(chan error, 1)
		go func() {
			_, err := c.CreateChatCompletion(t.Context(), userChat("hi"))
			errc <- err
		}()
		time.Sleep(time.Hour)
		synctest.Wait()
		start := time.Now()
		srv.Close()
		if err := <-errc; err == nil {
			t.Error("the stalled call succeeded after Close")
		}
		if time.Since(start) != 0 {
			t.Errorf("Close took %v of fake time", time.Since(start))
		}
		if n := len(srv.Requests()); n != 1 {
			t.Errorf("%d requests recorded", n)
		}
	})
}

func TestCompletionStreamStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, c := memServer(t, llmtest.WithChunks(2, "z "))
		srv.Enqueue(llmtest.StallBeforeFirstChunk(time.Second))
		start := time.Now()
		s, err := c.CreateCompletionStream(t.Context(), openai.CompletionRequest{Model: openai.GPT3Dot5TurboInstruct, Prompt: "p"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		first, err := s.Recv()
		if err != nil || first.Choices[0].Text != "z " || time.Since(start) != time.Second {
			t.Errorf("first event %+v, %v after %v; want text after 1s", first, err, time.Since(start))
		}
	})
}

// TestResponsesStallBeforeFirstDelta shows StallBeforeFirstChunk on a Responses stream: the
// events that carry no output come at once, the first delta after the stall and its chunk
// interval.
func TestResponsesStallBeforeFirstDelta(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, _ := memServer(t, llmtest.WithChunks(3, "a "), llmtest.WithChunkInterval(llmtest.Fixed(10*time.Millisecond)))
		srv.Enqueue(llmtest.StallBeforeFirstChunk(2*time.Second),
			llmtest.Fault{Kind: llmtest.KindStall, HeadersOnly: true, Duration: time.Second})
		params := responses.ResponseNewParams{Model: "m", Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("hi")}}
		ms := time.Millisecond
		for _, want := range [][]time.Duration{
			{0, 0, 0, 0, 2010 * ms, 2020 * ms, 2030 * ms, 2030 * ms, 2030 * ms, 2030 * ms, 2030 * ms},
			{1000 * ms, 1000 * ms, 1000 * ms, 1000 * ms, 1010 * ms, 1020 * ms, 1030 * ms, 1030 * ms, 1030 * ms, 1030 * ms, 1030 * ms},
		} {
			start := time.Now()
			stream := newOpenAIGo(srv).Responses.NewStreaming(t.Context(), params)
			var at []time.Duration
			for stream.Next() {
				at = append(at, time.Since(start))
			}
			if err := stream.Err(); err != nil || !slices.Equal(at, want) {
				t.Errorf("events at %v, %v; want %v", at, err, want)
			}
			stream.Close()
		}
	})
}
