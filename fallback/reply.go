package fallback

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/infermesh/infermesh/internal/llmwire"
)

// Reply is what a local target answers with, rendered by the chain in the OpenAI wire
// format of the call: a chat completion, a legacy completion or a Responses API
// response, streamed or not.
type Reply struct {
	// Content is the reply text.
	Content string
	// ToolCalls are the function calls the reply makes, in order.
	ToolCalls []ToolCall
	// FinishReason is reported as the choice's finish_reason; "" means "stop", or
	// "tool_calls" when the reply makes tool calls.
	FinishReason string
	// InputTokens and OutputTokens are reported as usage when either is non-zero. When
	// both are zero the reply carries no usage: a count that was not measured is not
	// invented.
	InputTokens, OutputTokens int
}

// ToolCall is one function call of a [Reply].
type ToolCall struct {
	// ID identifies the call ("call_..."); Name is the function's name; Arguments its
	// JSON arguments.
	ID, Name, Arguments string
}

type usageJSON struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type functionJSON struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type toolCallJSON struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function functionJSON `json:"function"`
}

type messageJSON struct {
	Role      string         `json:"role,omitempty"`
	Content   *string        `json:"content,omitempty"`
	ToolCalls []toolCallJSON `json:"tool_calls,omitempty"`
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
// ErrUnsupported for operations other than chat, legacy completions and the Responses
// API: a target never answers in a shape the caller did not ask for.
func render(r *Request, name string, rep Reply) (*http.Response, error) {
	id := "fallback-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	switch llmwire.OpOf(r.Operation) {
	case llmwire.OpResponses:
		resp := responseObject(id, r.Model, rep)
		if r.Stream {
			return responsesStream(r, resp), nil
		}
		return newResponse(r, "application/json", resp), nil
	case llmwire.OpChat, llmwire.OpCompletions:
		if r.Stream {
			return chatStream(r, id, rep), nil
		}
		return newResponse(r, "application/json", completionBody(r, id, rep)), nil
	}
	return nil, ErrUnsupported
}

func (rep Reply) finish() string {
	switch {
	case rep.FinishReason != "":
		return rep.FinishReason
	case len(rep.ToolCalls) > 0:
		return "tool_calls"
	}
	return "stop"
}

func (rep Reply) usage() *usageJSON {
	if rep.InputTokens == 0 && rep.OutputTokens == 0 {
		return nil
	}
	return &usageJSON{rep.InputTokens, rep.OutputTokens, rep.InputTokens + rep.OutputTokens}
}

func (rep Reply) toolCalls(withIndex bool) []toolCallJSON {
	out := make([]toolCallJSON, 0, len(rep.ToolCalls))
	for i, tc := range rep.ToolCalls {
		j := toolCallJSON{ID: tc.ID, Type: "function", Function: functionJSON{Name: tc.Name, Arguments: tc.Arguments}}
		if withIndex {
			j.Index = &i
		}
		out = append(out, j)
	}
	return out
}

// completionBody is a non-streamed chat completion or legacy completion.
func completionBody(r *Request, id string, rep Reply) []byte {
	finish := rep.finish()
	content := rep.Content
	out := completionJSON{ID: id, Created: time.Now().Unix(), Model: r.Model, Usage: rep.usage()}
	c := choiceJSON{FinishReason: &finish}
	if llmwire.OpOf(r.Operation) == llmwire.OpChat {
		out.Object = "chat.completion"
		c.Message = &messageJSON{Role: "assistant", Content: &content, ToolCalls: rep.toolCalls(false)}
	} else {
		out.Object = "text_completion"
		c.Text = &content
	}
	out.Choices = []choiceJSON{c}
	return mustJSON(out)
}

// chatStream renders a chat completion (or legacy completion) stream: a role chunk, the
// content, the tool calls, the finish reason, the usage chunk when the caller asked for
// it, and [DONE].
func chatStream(r *Request, id string, rep Reply) *http.Response {
	var buf bytes.Buffer
	event := func(v any) {
		buf.WriteString("data: ")
		buf.Write(mustJSON(v))
		buf.WriteString("\n\n")
	}
	chat := llmwire.OpOf(r.Operation) == llmwire.OpChat
	chunk := completionJSON{ID: id, Created: time.Now().Unix(), Model: r.Model, Object: "text_completion"}
	finish := rep.finish()
	content, empty := rep.Content, ""
	if chat {
		chunk.Object = "chat.completion.chunk"
		chunk.Choices = []choiceJSON{{Delta: &messageJSON{Role: "assistant", Content: &empty}}}
		event(chunk)
		if content != "" {
			chunk.Choices = []choiceJSON{{Delta: &messageJSON{Content: &content}}}
			event(chunk)
		}
		for _, tc := range rep.toolCalls(true) {
			chunk.Choices = []choiceJSON{{Delta: &messageJSON{ToolCalls: []toolCallJSON{tc}}}}
			event(chunk)
		}
		chunk.Choices = []choiceJSON{{Delta: &messageJSON{}, FinishReason: &finish}}
		event(chunk)
	} else {
		chunk.Choices = []choiceJSON{{Text: &content, FinishReason: &finish}}
		event(chunk)
	}
	if u := rep.usage(); r.IncludeUsage && u != nil {
		chunk.Choices = []choiceJSON{}
		chunk.Usage = u
		event(chunk)
	}
	buf.WriteString("data: [DONE]\n\n")
	return newResponse(r, "text/event-stream", buf.Bytes())
}

// responseObject is a completed Responses API response holding rep.
func responseObject(id, model string, rep Reply) []byte {
	b := []byte(`{"object":"response","status":"completed","error":null,"incomplete_details":null,"output":[]}`)
	b, _ = sjson.SetBytes(b, "id", "resp_"+id)
	b, _ = sjson.SetBytes(b, "created_at", time.Now().Unix())
	b, _ = sjson.SetBytes(b, "model", model)
	if rep.Content != "" || len(rep.ToolCalls) == 0 {
		msg := []byte(`{"type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[]}]}`)
		msg, _ = sjson.SetBytes(msg, "id", "msg_"+id)
		msg, _ = sjson.SetBytes(msg, "content.0.text", rep.Content)
		b, _ = sjson.SetRawBytes(b, "output.-1", msg)
	}
	for i, tc := range rep.ToolCalls {
		call := []byte(`{"type":"function_call","status":"completed"}`)
		call, _ = sjson.SetBytes(call, "id", "fc_"+id+"_"+strconv.Itoa(i))
		call, _ = sjson.SetBytes(call, "call_id", tc.ID)
		call, _ = sjson.SetBytes(call, "name", tc.Name)
		call, _ = sjson.SetBytes(call, "arguments", tc.Arguments)
		b, _ = sjson.SetRawBytes(b, "output.-1", call)
	}
	if u := rep.usage(); u != nil {
		b, _ = sjson.SetRawBytes(b, "usage", mustJSON(map[string]int{
			"input_tokens": u.PromptTokens, "output_tokens": u.CompletionTokens, "total_tokens": u.TotalTokens}))
	}
	return b
}

// responsesStream renders a Responses API response object as the event stream that
// produces it: response.created and .in_progress, each output item added, its text or
// arguments as one delta, done, and the terminal event with the whole response.
func responsesStream(r *Request, resp []byte) *http.Response {
	var buf bytes.Buffer
	seq := 0
	event := func(typ string, fields ...any) {
		b := []byte(`{}`)
		b, _ = sjson.SetBytes(b, "type", typ)
		b, _ = sjson.SetBytes(b, "sequence_number", seq)
		for i := 0; i+1 < len(fields); i += 2 {
			if raw, ok := fields[i+1].(json.RawMessage); ok {
				b, _ = sjson.SetRawBytes(b, fields[i].(string), raw)
			} else {
				b, _ = sjson.SetBytes(b, fields[i].(string), fields[i+1])
			}
		}
		seq++
		buf.WriteString("event: " + typ + "\ndata: ")
		buf.Write(b)
		buf.WriteString("\n\n")
	}
	doc := gjson.ParseBytes(resp)
	start, _ := sjson.SetBytes(resp, "status", "in_progress")
	start, _ = sjson.SetRawBytes(start, "output", []byte(`[]`))
	event("response.created", "response", json.RawMessage(start))
	event("response.in_progress", "response", json.RawMessage(start))
	doc.Get("output").ForEach(func(k, item gjson.Result) bool {
		outputItem(event, int(k.Int()), item)
		return true
	})
	terminal := "response.completed"
	switch doc.Get("status").String() {
	case "incomplete":
		terminal = "response.incomplete"
	case "failed":
		terminal = "response.failed"
	}
	event(terminal, "response", json.RawMessage(resp))
	return newResponse(r, "text/event-stream", buf.Bytes())
}

// outputItem emits the events of one output item of a Responses API response.
func outputItem(event func(string, ...any), index int, item gjson.Result) {
	id := item.Get("id").String()
	added := []byte(item.Raw)
	added, _ = sjson.SetBytes(added, "status", "in_progress")
	switch item.Get("type").String() {
	case "message":
		added, _ = sjson.SetRawBytes(added, "content", []byte(`[]`))
		event("response.output_item.added", "output_index", index, "item", json.RawMessage(added))
		item.Get("content").ForEach(func(k, part gjson.Result) bool {
			j := int(k.Int())
			text, delta, field := part.Get("text").String(), "response.output_text", "text"
			if part.Get("type").String() == "refusal" {
				text, delta, field = part.Get("refusal").String(), "response.refusal", "refusal"
			}
			empty, _ := sjson.SetBytes([]byte(part.Raw), field, "")
			event("response.content_part.added", "item_id", id, "output_index", index, "content_index", j, "part", json.RawMessage(empty))
			event(delta+".delta", "item_id", id, "output_index", index, "content_index", j, "delta", text)
			event(delta+".done", "item_id", id, "output_index", index, "content_index", j, field, text)
			event("response.content_part.done", "item_id", id, "output_index", index, "content_index", j, "part", json.RawMessage(part.Raw))
			return true
		})
	case "function_call":
		added, _ = sjson.SetBytes(added, "arguments", "")
		event("response.output_item.added", "output_index", index, "item", json.RawMessage(added))
		args := item.Get("arguments").String()
		event("response.function_call_arguments.delta", "item_id", id, "output_index", index, "delta", args)
		event("response.function_call_arguments.done", "item_id", id, "output_index", index, "arguments", args)
	default:
		event("response.output_item.added", "output_index", index, "item", json.RawMessage(item.Raw))
	}
	event("response.output_item.done", "output_index", index, "item", json.RawMessage(item.Raw))
}

// renderStored renders a stored non-streamed reply as the stream r asks for.
func renderStored(r *Request, body []byte) (*http.Response, error) {
	switch llmwire.OpOf(r.Operation) {
	case llmwire.OpResponses:
		if gjson.GetBytes(body, "object").String() != "response" {
			return nil, errNotRenderable
		}
		return responsesStream(r, body), nil
	case llmwire.OpChat, llmwire.OpCompletions:
		rep, id, err := replyOf(body)
		if err != nil {
			return nil, err
		}
		return chatStream(r, id, rep), nil
	}
	return nil, ErrUnsupported
}

var errNotRenderable = errors.New("fallback: cached reply cannot be rendered as a stream")

// replyOf recovers the text, tool calls, finish reason and usage of a stored chat or
// legacy completion reply, and its id.
func replyOf(body []byte) (Reply, string, error) {
	doc := gjson.ParseBytes(body)
	ch := doc.Get("choices.0")
	if !ch.Exists() {
		return Reply{}, "", errNotRenderable
	}
	rep := Reply{
		Content:      ch.Get("message.content").String() + ch.Get("text").String(),
		FinishReason: ch.Get("finish_reason").String(),
		InputTokens:  int(doc.Get("usage.prompt_tokens").Int()),
		OutputTokens: int(doc.Get("usage.completion_tokens").Int()),
	}
	ch.Get("message.tool_calls").ForEach(func(_, tc gjson.Result) bool {
		rep.ToolCalls = append(rep.ToolCalls, ToolCall{
			ID: tc.Get("id").String(), Name: tc.Get("function.name").String(), Arguments: tc.Get("function.arguments").String()})
		return true
	})
	return rep, doc.Get("id").String(), nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fallback: " + err.Error()) // the types above always marshal
	}
	return b
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
