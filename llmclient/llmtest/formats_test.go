package llmtest_test

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	openai "github.com/sashabaranov/go-openai"
)

func TestStreamFormatNDJSON(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithStreamFormat(llmtest.StreamNDJSON), llmtest.WithChunks(2, "a "))
	for _, tc := range []struct {
		path, body string
		lines      int
		last       string // a substring of the last line
	}{
		{llmtest.PathChatCompletions, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`, 5, `"choices":[],"usage":{`},
		{llmtest.PathCompletions, `{"model":"m","stream":true,"prompt":"x"}`, 3, `"finish_reason":"stop"`},
		{llmtest.PathResponses, responsesStreamBody, 10, `"type":"response.completed"`},
	} {
		r := post(t, srv, tc.path, tc.body)
		if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%s: status %d, content-type %q", tc.path, r.status, r.header.Get("Content-Type"))
		}
		if !strings.HasSuffix(r.body, "}\n") {
			t.Errorf("%s: body does not end with a JSON line: %q", tc.path, r.body)
		}
		lines := strings.Split(strings.TrimSuffix(r.body, "\n"), "\n")
		for i, l := range lines {
			if !json.Valid([]byte(l)) {
				t.Errorf("%s: line %d is not JSON: %q", tc.path, i, l)
			}
		}
		if len(lines) != tc.lines || !strings.Contains(lines[len(lines)-1], tc.last) {
			t.Errorf("%s: %d lines, the last %q; want %d holding %s", tc.path, len(lines), lines[len(lines)-1], tc.lines, tc.last)
		}
	}
	// Answers that are not streamed are unchanged.
	if r := post(t, srv, llmtest.PathChatCompletions, chatBody); r.header.Get("Content-Type") != "application/json" {
		t.Errorf("non-streamed content-type %q", r.header.Get("Content-Type"))
	}
}

func TestStreamFormatUntyped(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithStreamFormat(llmtest.StreamSSEUntyped))
	r := post(t, srv, llmtest.PathChatCompletions, streamBody)
	if _, ok := r.header["Content-Type"]; ok || r.status != 200 {
		t.Errorf("status %d, content-type %q; want none", r.status, r.header.Get("Content-Type"))
	}
	if !strings.HasPrefix(r.body, "data: {") || !strings.HasSuffix(r.body, "data: [DONE]\n\n") {
		t.Errorf("body is not SSE: %q", r.body)
	}
	// go-openai does not look at the Content-Type: it still reads the stream.
	s, err := newOpenAI(srv).CreateChatCompletionStream(t.Context(), userChat("hi"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chunks, err := recvAll(s)
	if !errors.Is(err, io.EOF) || contentChunks(chunks) != llmtest.DefaultChunks {
		t.Errorf("%d content chunks, %v", contentChunks(chunks), err)
	}
}

func TestRejectStreamOptions(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithRejectStreamOptions())
	const want = `{"error":{"message":"Unknown parameter: 'stream_options'.","type":"invalid_request_error","param":"stream_options","code":"unknown_parameter"}}` + "\n"
	for _, tc := range []struct{ path, body string }{
		{llmtest.PathChatCompletions, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`},
		{llmtest.PathChatCompletions, `{"model":"m","stream_options":null,"messages":[{"role":"user","content":"x"}]}`},
		{llmtest.PathCompletions, `{"model":"m","stream":true,"stream_options":{},"prompt":"x"}`},
		{llmtest.PathResponses, `{"model":"m","stream":true,"stream_options":{"include_obfuscation":false},"input":"x"}`},
	} {
		if r := post(t, srv, tc.path, tc.body); r.status != 400 || r.body != want {
			t.Errorf("%s: %d %s", tc.body, r.status, r.body)
		}
	}
	if r := post(t, srv, llmtest.PathChatCompletions, streamBody); r.status != 200 {
		t.Errorf("without stream_options: status %d", r.status)
	}

	req := userChat("hi")
	req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	_, err := newOpenAI(srv).CreateChatCompletionStream(t.Context(), req)
	if e := asAPIError(t, err); e.HTTPStatusCode != 400 || e.Param == nil || *e.Param != "stream_options" || !strings.Contains(e.Message, "stream_options") {
		t.Errorf("go-openai: %+v", e)
	}
}
