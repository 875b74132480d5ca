package llmtest_test

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	openai "github.com/sashabaranov/go-openai"
)

const chatBody = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
const streamBody = `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`

func TestStatusFaults(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	c := newOpenAI(srv)
	// go-openai decodes "code":null as the integer 0.
	for _, tc := range []struct {
		fault        llmtest.Fault
		status       int
		typ, message string
		code         any
	}{
		{llmtest.Status(429), 429, "requests", "Rate limit reached for requests", "rate_limit_exceeded"},
		{llmtest.Status(500), 500, "server_error", "The server had an error while processing your request. Sorry about that!", 0},
		{llmtest.Status(502), 502, "server_error", "Bad gateway.", 0},
		{llmtest.Status(503), 503, "server_error", "The server is overloaded or not ready yet.", 0},
		{llmtest.Status(504), 504, "server_error", "Gateway timeout.", 0},
		{llmtest.Fault{Kind: llmtest.KindStatus}, 500, "server_error", "The server had an error while processing your request. Sorry about that!", 0},
		{llmtest.Fault{Kind: llmtest.KindStatus, Status: 400, Message: "too long", Code: "context_length_exceeded", Param: "messages"},
			400, "invalid_request_error", "too long", "context_length_exceeded"},
	} {
		srv.Enqueue(tc.fault)
		_, err := c.CreateChatCompletion(t.Context(), userChat("hi"))
		e := asAPIError(t, err)
		if e.HTTPStatusCode != tc.status || e.Type != tc.typ || e.Message != tc.message || e.Code != tc.code {
			t.Errorf("%+v: got status %d type %q message %q code %v", tc.fault, e.HTTPStatusCode, e.Type, e.Message, e.Code)
		}
	}
	// Streams see the same error before any chunk.
	srv.Enqueue(llmtest.Status(503))
	_, err := c.CreateChatCompletionStream(t.Context(), userChat("hi"))
	if e := asAPIError(t, err); e.HTTPStatusCode != 503 {
		t.Errorf("stream: status %d", e.HTTPStatusCode)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	for _, tc := range []struct {
		format      llmtest.RetryAfterFormat
		after, ms   string
		checkHTTPDt bool
	}{
		{llmtest.RetryAfterSeconds, "2", "", false},
		{llmtest.RetryAfterMillis, "", "1500", false},
		{llmtest.RetryAfterSecondsAndMillis, "2", "1500", false},
		{llmtest.RetryAfterDate, "", "", true},
	} {
		srv.Enqueue(llmtest.Status(429).WithRetryAfter(1500*time.Millisecond, tc.format))
		before := time.Now().Truncate(time.Second)
		r := post(t, srv, llmtest.PathChatCompletions, chatBody)
		if r.status != 429 {
			t.Fatalf("status %d", r.status)
		}
		if got := r.header.Get("Retry-After-Ms"); got != tc.ms {
			t.Errorf("format %d: retry-after-ms = %q, want %q", tc.format, got, tc.ms)
		}
		got := r.header.Get("Retry-After")
		if !tc.checkHTTPDt {
			if got != tc.after {
				t.Errorf("format %d: Retry-After = %q, want %q", tc.format, got, tc.after)
			}
			continue
		}
		at, err := http.ParseTime(got)
		if err != nil {
			t.Fatalf("Retry-After %q is not an HTTP date: %v", got, err)
		}
		if d := at.Sub(before); d < 1500*time.Millisecond || d > 3*time.Second {
			t.Errorf("Retry-After date %v is %v after the request", at, d)
		}
	}
}

func TestEnvoyLocalReplies(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	c := newOpenAI(srv)
	for _, tc := range []struct {
		fault      llmtest.Fault
		status     int
		body       string
		overloaded bool
	}{
		{llmtest.EnvoyOverflow(), 503, "upstream connect error or disconnect/reset before headers. reset reason: overflow", true},
		{llmtest.EnvoyNoHealthyUpstream(), 503, "no healthy upstream", false},
		{llmtest.EnvoyConnectFailure(), 503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure", false},
		{llmtest.EnvoyUpstreamTimeout(), 504, "upstream request timeout", false},
	} {
		srv.Enqueue(tc.fault)
		r := post(t, srv, llmtest.PathChatCompletions, chatBody)
		h := r.header
		if r.status != tc.status || r.body != tc.body {
			t.Errorf("%v: %d %q, want %d %q", tc.fault.Kind, r.status, r.body, tc.status, tc.body)
		}
		if h.Get("Content-Type") != "text/plain" || h.Get("Server") != "envoy" || h.Get("Date") == "" ||
			h.Get("Content-Length") != strconv.Itoa(len(tc.body)) || h.Get("X-Request-Id") != "" {
			t.Errorf("%v: headers %v", tc.fault.Kind, h)
		}
		if got := h.Get("X-Envoy-Overloaded") == "true"; got != tc.overloaded {
			t.Errorf("%v: x-envoy-overloaded = %q", tc.fault.Kind, h.Get("X-Envoy-Overloaded"))
		}

		// go-openai cannot parse the text body: it returns a *RequestError holding it.
		srv.Enqueue(tc.fault)
		_, err := c.CreateChatCompletion(t.Context(), userChat("hi"))
		var reqErr *openai.RequestError
		if !errors.As(err, &reqErr) || reqErr.HTTPStatusCode != tc.status || string(reqErr.Body) != tc.body {
			t.Errorf("%v: go-openai error %v", tc.fault.Kind, err)
		}
	}
}

func TestEnvoyHeadersDecorateAnyResponse(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	srv.Enqueue(
		llmtest.Envoy(42*time.Millisecond, 1),
		llmtest.Status(503).WithEnvoyHeaders(7*time.Millisecond, 3).WithHeader("X-Extra", "1"),
	)
	for i, want := range []struct {
		status         int
		upstream, atts string
	}{{200, "42", "1"}, {503, "7", "3"}} {
		r := post(t, srv, llmtest.PathChatCompletions, chatBody)
		if r.status != want.status || r.header.Get("X-Envoy-Upstream-Service-Time") != want.upstream ||
			r.header.Get("X-Envoy-Attempt-Count") != want.atts {
			t.Errorf("response %d: status %d, headers %v", i, r.status, r.header)
		}
	}
	if srv.Requests()[1].Fault.Header.Get("X-Extra") != "1" {
		t.Error("the recorded fault lost its header")
	}
}

// TestResetBeforeHeaders shows that a reset really closes the TCP connection: a raw
// connection reads EOF or a reset with no response byte, and go-openai gets a transport
// error, not an API error.
func TestResetBeforeHeaders(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	srv.Enqueue(llmtest.Reset())
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(chatBody)) + "\r\n\r\n" + chatBody
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(make([]byte, 1))
	if n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("raw read = %d, %v; want 0 bytes and EOF or a reset", n, err)
	}
	if got := srv.Requests()[0].Fault.Kind; got != llmtest.KindReset {
		t.Errorf("recorded fault %v", got)
	}

	srv.Enqueue(llmtest.Reset())
	_, err = newOpenAI(srv).CreateChatCompletion(t.Context(), userChat("hi"))
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	if err == nil || errors.As(err, &apiErr) || errors.As(err, &reqErr) {
		t.Fatalf("go-openai error = %v, want a transport error", err)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("go-openai error = %v, want EOF or a reset", err)
	}
}

// recvAll reads a go-openai chat stream until an error, at most 50 chunks.
func recvAll(s *openai.ChatCompletionStream) (chunks []openai.ChatCompletionStreamResponse, err error) {
	for range 50 {
		c, err := s.Recv()
		if err != nil {
			return chunks, err
		}
		chunks = append(chunks, c)
	}
	return chunks, errors.New("stream too long")
}

func contentChunks(chunks []openai.ChatCompletionStreamResponse) int {
	n := 0
	for _, c := range chunks {
		if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
			n++
		}
	}
	return n
}

func TestStreamReset(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	c := newOpenAI(srv)
	srv.Enqueue(llmtest.ResetAfter(2))
	s, err := c.CreateChatCompletionStream(t.Context(), userChat("hi"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chunks, err := recvAll(s)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("stream error = %v, want unexpected EOF", err)
	}
	if len(chunks) != 3 || contentChunks(chunks) != 2 {
		t.Errorf("got %d chunks (%d with content) before the reset, want role + 2", len(chunks), contentChunks(chunks))
	}

	srv.Enqueue(llmtest.ResetAfter(0))
	_, err = c.CreateChatCompletion(t.Context(), userChat("hi"))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("non-streamed: error = %v, want unexpected EOF", err)
	}
}

func TestErrorEvent(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	c := newOpenAI(srv)
	srv.Enqueue(llmtest.ErrorEvent(1))
	s, err := c.CreateChatCompletionStream(t.Context(), userChat("hi"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chunks, err := recvAll(s)
	e := asAPIError(t, err)
	if e.Message != "Overloaded" || e.Type != "overloaded_error" || contentChunks(chunks) != 1 {
		t.Errorf("error %+v after %d content chunks", e, contentChunks(chunks))
	}

	// Raw: the stream is 200 and ends after the error event, without [DONE].
	srv.Enqueue(llmtest.Fault{Kind: llmtest.KindErrorEvent, Message: "busy", Type: "server_error"})
	r := post(t, srv, llmtest.PathChatCompletions, streamBody)
	data := sseData(r.body)
	if r.status != 200 || len(data) != 2 || data[1] != `{"error":{"message":"busy","type":"server_error","param":null,"code":null}}` {
		t.Errorf("raw stream %d %q", r.status, r.body)
	}

	// A non-streamed 200 holding only an error object: go-openai decodes it as an empty response.
	srv.Enqueue(llmtest.ErrorEvent(0))
	resp, err := c.CreateChatCompletion(t.Context(), userChat("hi"))
	if err != nil || resp.ID != "" || len(resp.Choices) != 0 {
		t.Errorf("go-openai: %+v, %v; want an empty response and no error", resp, err)
	}
	srv.Enqueue(llmtest.ErrorEvent(0))
	r = post(t, srv, llmtest.PathEmbeddings, `{"model":"m","input":"x"}`)
	if r.status != 200 || r.body != `{"error":{"message":"Overloaded","type":"overloaded_error","param":null,"code":null}}`+"\n" {
		t.Errorf("raw JSON %d %q", r.status, r.body)
	}
}

func TestMalformedJSON(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	c := newOpenAI(srv)
	srv.Enqueue(llmtest.MalformedJSON(0))
	_, err := c.CreateChatCompletion(t.Context(), userChat("hi"))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("non-streamed: error = %v, want unexpected EOF from the JSON decoder", err)
	}
	srv.Enqueue(llmtest.MalformedJSON(2))
	s, err := c.CreateChatCompletionStream(t.Context(), userChat("hi"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chunks, err := recvAll(s)
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) || contentChunks(chunks) != 2 {
		t.Errorf("stream: error %v (%T) after %d content chunks; want a JSON syntax error after 2", err, err, contentChunks(chunks))
	}
}

func TestOversized(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	normal := post(t, srv, llmtest.PathEmbeddings, `{"model":"m","input":"x"}`)
	srv.Enqueue(llmtest.Oversized(1 << 20))
	big := post(t, srv, llmtest.PathEmbeddings, `{"model":"m","input":"x"}`)
	if big.status != 200 || len(big.body) != len(normal.body)-1+1<<20 {
		t.Fatalf("oversized: %d, %d bytes; normal %d bytes", big.status, len(big.body), len(normal.body))
	}
	var a, b any
	if json.Unmarshal([]byte(normal.body), &a) != nil || json.Unmarshal([]byte(big.body), &b) != nil {
		t.Fatal("bodies must be valid JSON")
	}

	srv.Enqueue(llmtest.Fault{Kind: llmtest.KindOversized, Size: 200 << 10, AfterChunks: 1})
	s, err := newOpenAI(srv).CreateChatCompletionStream(t.Context(), userChat("hi"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chunks, err := recvAll(s)
	if !errors.Is(err, io.EOF) || len(chunks) != 1+1+llmtest.DefaultChunks+1 {
		t.Fatalf("stream: %d chunks, %v", len(chunks), err)
	}
	if got := len(chunks[2].Choices[0].Delta.Content); got != 200<<10 {
		t.Errorf("padded chunk holds %d bytes", got)
	}
}

// TestCloseEndsStall shows that Close does not wait for a stalled handler on a real socket:
// the client, which set no deadline, sees its stream die.
func TestCloseEndsStall(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewServer()
	srv.Enqueue(llmtest.StallBeforeFirstChunk(0))
	resp, err := srv.Client().Post(srv.URL+llmtest.PathChatCompletions, "application/json", strings.NewReader(streamBody))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	role, err := br.ReadString('\n')
	if err != nil || !strings.Contains(role, `"role":"assistant"`) {
		t.Fatalf("first line %q, %v", role, err)
	}
	done := make(chan struct{})
	go func() {
		srv.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a stalled handler")
	}
	rest, err := io.ReadAll(br)
	if err == nil && strings.Contains(string(rest), "[DONE]") {
		t.Errorf("the stalled stream finished after Close: %q", rest)
	}
}

// TestGzipBomb reads a bomb both raw (the transport does not decode it) and through a Go
// client that decodes it.
func TestGzipBomb(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	raw := srv.Transport()
	raw.DisableCompression = true
	rawClient := &http.Client{Transport: raw}
	const size = 1 << 20
	const embed = `{"model":"m","input":"x"}`
	normal := post(t, srv, llmtest.PathEmbeddings, embed)

	srv.Enqueue(llmtest.GzipBomb(size))
	r := do(t, rawClient, "POST", srv.URL+llmtest.PathEmbeddings, embed)
	if cl := r.header.Get("Content-Length"); r.status != 200 || r.header.Get("Content-Encoding") != "gzip" ||
		cl != "" && cl != strconv.Itoa(len(r.body)) || len(r.body) > 16<<10 {
		t.Fatalf("raw: %d, headers %v, %d bytes on the wire", r.status, r.header, len(r.body))
	}
	zr, err := gzip.NewReader(strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := io.ReadAll(zr)
	if err != nil || len(decoded) != size {
		t.Fatalf("decoded %d bytes, %v; want %d", len(decoded), err, size)
	}
	var a, b any
	if json.Unmarshal(decoded, &a) != nil || json.Unmarshal([]byte(normal.body), &b) != nil || !reflect.DeepEqual(a, b) {
		t.Error("the decoded bomb is not the normal answer padded with whitespace")
	}

	// Go's transport asked for gzip itself, so it decodes the bomb whole.
	srv.Enqueue(llmtest.GzipBomb(size))
	if r := post(t, srv, llmtest.PathEmbeddings, embed); r.status != 200 || len(r.body) != size {
		t.Errorf("decoded by the client: %d, %d bytes", r.status, len(r.body))
	}
	// A body larger than the size is sent as is (gzip-encoded).
	srv.Enqueue(llmtest.GzipBomb(10))
	if r := post(t, srv, llmtest.PathEmbeddings, embed); r.body != strings.TrimSuffix(normal.body, "\n") {
		t.Errorf("small bomb: %q", r.body)
	}

	// A stream carries one padding chunk and still ends with [DONE].
	srv.Enqueue(llmtest.Fault{Kind: llmtest.KindGzipBomb, Size: 256 << 10, AfterChunks: 1})
	r = do(t, rawClient, "POST", srv.URL+llmtest.PathChatCompletions, streamBody)
	if r.header.Get("Content-Encoding") != "gzip" || len(r.body) > 16<<10 {
		t.Fatalf("stream: headers %v, %d bytes on the wire", r.header, len(r.body))
	}
	zr, err = gzip.NewReader(strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	decoded, err = io.ReadAll(zr)
	data := sseData(string(decoded))
	if err != nil || len(data) != 1+llmtest.DefaultChunks+1+1+1 || !strings.Contains(data[2], strings.Repeat("x", 256<<10)) || data[len(data)-1] != "[DONE]" {
		t.Errorf("stream: %d events, %v", len(data), err)
	}
}

// TestTruncate shows a stream that ends cleanly without its terminal events: go-openai
// cannot tell it from a finished stream, which is what tests of truncation detection need.
func TestTruncate(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	srv.Enqueue(llmtest.Truncate(2))
	r := post(t, srv, llmtest.PathChatCompletions, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	data := sseData(r.body)
	if r.err != nil || len(data) != 3 || strings.Contains(r.body, "[DONE]") || strings.Contains(r.body, `"finish_reason":"`) {
		t.Errorf("chat: %d events, %v: %q", len(data), r.err, r.body)
	}
	srv.Enqueue(llmtest.Truncate(1))
	s, err := newOpenAI(srv).CreateCompletionStream(t.Context(), openai.CompletionRequest{Model: "m", Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	for range 10 {
		if _, err = s.Recv(); err != nil {
			break
		}
		n++
	}
	if n != 1 || !errors.Is(err, io.EOF) {
		t.Errorf("completions through go-openai: %d events, then %v; want 1, then EOF", n, err)
	}
}

// TestResponseFailedOnChat shows KindResponseFailed acting as KindErrorEvent where the
// route has no response.failed event.
func TestResponseFailedOnChat(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	srv.Enqueue(llmtest.ResponseFailed(1))
	r := post(t, srv, llmtest.PathChatCompletions, streamBody)
	data := sseData(r.body)
	if len(data) != 3 || data[2] != `{"error":{"message":"Overloaded","type":"overloaded_error","param":null,"code":null}}` {
		t.Errorf("%q", data)
	}
}
