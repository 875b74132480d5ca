package fallback

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Reply is the text a local target answers with, rendered by the chain in the OpenAI
// wire format of the call (a chat completion or a legacy completion, streamed or not).
type Reply struct {
	// Content is the reply text.
	Content string
	// FinishReason is reported as the choice's finish_reason; "" means "stop".
	FinishReason string
	// InputTokens and OutputTokens are reported as usage when either is non-zero. When
	// both are zero the reply carries no usage: a count that was not measured is not
	// invented.
	InputTokens, OutputTokens int
}

type usageJSON struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type messageJSON struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content"`
}

type choiceJSON struct {
	Index        int          `json:"index"`
	Message      *messageJSON `json:"message,omitempty"`
	Delta        *messageJSON `json:"delta,omitempty"`
	Text         *string      `json:"text,omitempty"`
	FinishReason *string      `json:"finish_reason"`
}

type completionJSON struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []choiceJSON `json:"choices"`
	Usage   *usageJSON   `json:"usage,omitempty"`
}

// render turns a Reply into an HTTP response for r's operation. It returns
// ErrUnsupported for operations other than chat and legacy completions.
func render(r *Request, name string, rep Reply) (*http.Response, error) {
	chat := r.Operation == "/chat/completions"
	if !chat && r.Operation != "/completions" {
		return nil, ErrUnsupported
	}
	finish := rep.FinishReason
	if finish == "" {
		finish = "stop"
	}
	var usage *usageJSON
	if rep.InputTokens != 0 || rep.OutputTokens != 0 {
		usage = &usageJSON{rep.InputTokens, rep.OutputTokens, rep.InputTokens + rep.OutputTokens}
	}
	base := completionJSON{
		ID:      "fallback-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Created: time.Now().Unix(),
		Model:   r.Model,
	}
	if !r.Stream {
		out := base
		out.Object = "text_completion"
		content := rep.Content
		c := choiceJSON{FinishReason: &finish}
		if chat {
			out.Object = "chat.completion"
			c.Message = &messageJSON{Role: "assistant", Content: content}
		} else {
			c.Text = &content
		}
		out.Choices = []choiceJSON{c}
		out.Usage = usage
		body, err := json.Marshal(out)
		if err != nil {
			return nil, err
		}
		return newResponse(r, "application/json", body), nil
	}

	var buf bytes.Buffer
	event := func(v any) {
		b, _ := json.Marshal(v) // the types above always marshal
		buf.WriteString("data: ")
		buf.Write(b)
		buf.WriteString("\n\n")
	}
	chunk := base
	chunk.Object = "text_completion"
	if chat {
		chunk.Object = "chat.completion.chunk"
	}
	content := rep.Content
	if chat {
		chunk.Choices = []choiceJSON{{Delta: &messageJSON{Role: "assistant", Content: ""}}}
		event(chunk)
		chunk.Choices = []choiceJSON{{Delta: &messageJSON{Content: content}}}
		event(chunk)
		chunk.Choices = []choiceJSON{{Delta: &messageJSON{}, FinishReason: &finish}}
		event(chunk)
	} else {
		chunk.Choices = []choiceJSON{{Text: &content, FinishReason: &finish}}
		event(chunk)
	}
	if r.IncludeUsage && usage != nil {
		chunk.Choices = []choiceJSON{}
		chunk.Usage = usage
		event(chunk)
	}
	buf.WriteString("data: [DONE]\n\n")
	return newResponse(r, "text/event-stream", buf.Bytes()), nil
}

// newResponse builds a complete in-memory 200 response to r.
func newResponse(r *Request, contentType string, body []byte) *http.Response {
	h := make(http.Header, 3)
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r.HTTP,
	}
}
