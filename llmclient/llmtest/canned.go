package llmtest

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// Canned is an http.RoundTripper that answers every request at once with the same 200
// response, with no socket and no server: a Base transport for benchmarks of a client's
// own work per call. It reads and closes the request body, as a server would.
type Canned struct {
	// Body is the answer's body.
	Body []byte
	// ContentType is the answer's Content-Type.
	ContentType string
}

var _ http.RoundTripper = Canned{}

// RoundTrip answers req with c's response.
func (c Canned) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {c.ContentType}},
		Body:          io.NopCloser(bytes.NewReader(c.Body)),
		ContentLength: int64(len(c.Body)),
		Request:       req,
	}, nil
}

// CannedContent is the text of [CannedChat] and [CannedStream]: 8 tokens.
const CannedContent = "tok tok tok tok tok tok tok tok "

// CannedChat is a chat completion of [CannedContent] with its usage (9 + 8 = 17 tokens).
func CannedChat() Canned {
	return Canned{Body: []byte(cannedChat), ContentType: "application/json"}
}

// CannedStream is the same answer as a chat stream of 11 events: 8 content chunks, a
// finish chunk, a usage chunk (as stream_options.include_usage asks) and [DONE].
func CannedStream() Canned {
	return Canned{Body: []byte(cannedStream), ContentType: "text/event-stream"}
}

const (
	cannedChat = `{"id":"chatcmpl-1","object":"chat.completion","created":1717000000,"model":"gpt-4o-mini-2024-07-18",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"` + CannedContent + `"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}`
	cannedChunk = `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-mini-2024-07-18",`
)

var cannedStream = strings.Repeat(cannedChunk+`"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}],"usage":null}`+"\n\n", 8) +
	cannedChunk + `"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}` + "\n\n" +
	cannedChunk + `"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}` + "\n\n" +
	"data: [DONE]\n\n"
