package llmclient_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// TestSlowConsumerKeepsHealthyStream: the idle clock runs only while the caller waits
// on the upstream. A caller that pauses longer than the idle timeout between reads (one
// relaying to a slow websocket, say) keeps a healthy stream.
func TestSlowConsumerKeepsHealthyStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := llmclient.Config{}
		cfg.Route("chat").Stream.IdleTimeout = 500 * time.Millisecond
		e, done := newEnv(t, cfg, llmtest.WithChunks(10, "t "), llmtest.WithChunkInterval(llmtest.Fixed(50*time.Millisecond)))
		defer done()
		s, err := e.client.CreateChatCompletionStream(context.Background(), chatReq(true))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		content := ""
		for i := range 100 {
			chunk, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("after %d chunks: %v", i, err)
			}
			for _, c := range chunk.Choices {
				content += c.Delta.Content
			}
			if i == 1 {
				time.Sleep(800 * time.Millisecond) // the caller is busy, not the upstream
			}
		}
		if content != "t t t t t t t t t t " {
			t.Errorf("content %q", content)
		}
	})
}

// TestUsageRequestSwitch: a route can keep infermesh from adding
// stream_options.include_usage; a strict server's 400 naming stream_options is answered
// by sending the call again without it, once, and by never adding it for that host
// again. A caller's own stream_options is the caller's: its 400 goes back as it is.
func TestUsageRequestSwitch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := llmclient.Config{}
		cfg.Route("chat").Stream.NoUsageRequest = true
		e, done := newEnv(t, cfg, llmtest.WithChunks(2, "ok "))
		defer done()
		if res := readStream(context.Background(), e.client, chatReq(true)); res.err != nil || res.openErr != nil {
			t.Fatal(res.err, res.openErr)
		}
		if _, ok := requestBodies(t, e.srv, "/v1/chat/completions")[0]["stream_options"]; ok {
			t.Error("stream_options added on a route that says not to")
		}
	})
	synctest.Test(t, func(t *testing.T) {
		e, done := newEnv(t, llmclient.Config{}, llmtest.WithChunks(2, "ok "), llmtest.WithRejectStreamOptions())
		defer done()
		for call := range 2 {
			res := readStream(context.Background(), e.client, chatReq(true))
			if res.err != nil || res.openErr != nil || res.content != "ok ok " {
				t.Fatalf("call %d against a strict server: %v %v %q", call, res.err, res.openErr, res.content)
			}
		}
		bodies := requestBodies(t, e.srv, "/v1/chat/completions")
		if len(bodies) != 3 {
			t.Fatalf("%d requests, want 3: the first call sent again once without stream_options, the second without it", len(bodies))
		}
		_, first := bodies[0]["stream_options"]
		_, second := bodies[1]["stream_options"]
		_, third := bodies[2]["stream_options"]
		if !first || second || third {
			t.Errorf("stream_options in requests: %v %v %v", first, second, third)
		}
		req := chatReq(true)
		req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
		var ae *openai.APIError
		if _, err := e.client.CreateChatCompletionStream(context.Background(), req); !errors.As(err, &ae) || ae.HTTPStatusCode != 400 {
			t.Errorf("the caller's own stream_options: err %v, want the server's 400", err)
		}
	})
}

// TestCacheStopsRecordingLongStreams: with a cache, a stream's text is put together
// only up to the largest entry the cache stores.
func TestCacheStopsRecordingLongStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cache, err := fallback.NewCache(fallback.CacheConfig{MaxEntryBytes: 64, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		e, done := newEnv(t, llmclient.Config{Cache: cache}, llmtest.WithChunks(40, "long text "))
		defer done()
		if res := readStream(context.Background(), e.client, chatReq(true)); res.err != nil || res.openErr != nil {
			t.Fatal(res.err, res.openErr)
		}
		if cache.Len() != 0 {
			t.Errorf("a 400-byte answer was kept by a cache whose entries are at most 64 bytes")
		}
	})
}
