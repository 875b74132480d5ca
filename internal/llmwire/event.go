package llmwire

import (
	"errors"
	"strings"

	"github.com/tidwall/gjson"
)

// Usage is a token count as a provider reports it. Has is false when the document
// carried none: a count that was not reported is never invented.
type Usage struct {
	Has                                bool
	InputTokens, OutputTokens, Total   int64
	ReasoningTokens, CachedInputTokens int64
}

// ErrorObject is an OpenAI-shaped error: {"error":{"message","type","code","param"}}, an
// error event of a stream, or the error of a failed Responses API response. Code is kept
// as text whether the server sent a string or a number.
type ErrorObject struct {
	Message, Type, Code, Param string
}

// ToolCallDelta is one piece of a streamed tool call: the first piece of a call names
// it (ID, Name), the next ones add to its Arguments.
type ToolCallDelta struct {
	Choice, Index  int
	ID, Type, Name string
	Arguments      string
}

// Event is what one stream event means to a client.
type Event struct {
	// Output reports that the event carries output to the caller: content, refusal,
	// tool-call or function-argument deltas, reasoning text. The first such event of
	// a stream is its commit point.
	Output bool
	// Terminal reports the event that ends a stream properly: [DONE], a chat chunk
	// whose choices all carry a finish reason, or response.completed,
	// response.incomplete or response.failed.
	Terminal bool
	// Done is chat's "[DONE]" marker (Terminal too).
	Done bool
	// Choices reports a chat chunk with at least one choice; with Terminal false it
	// means the stream must go on.
	Choices bool
	// UsageOnly is a chat chunk that carries usage and no choices: the chunk
	// stream_options.include_usage asks for.
	UsageOnly bool
	// Head is the response's model and id and the usage, when the event carries them,
	// and the error the event reports: an error object in a chat chunk, a Responses
	// "error" event, or the error of response.failed.
	Head
	// Type is a Responses API event's type, such as "response.output_text.delta".
	Type string
	// FinishReasons are the finish reasons of the chunk's choices, or the status of a
	// terminal Responses event ("completed", "incomplete", "failed").
	FinishReasons []string
	// Text is the text the event adds: content, text or output_text deltas.
	Text string
	// Refusal is the refusal text a chat chunk adds.
	Refusal string
	// OtherChoice reports a chat chunk with a choice other than the first (n > 1).
	OtherChoice bool
	// ToolCalls are the tool-call pieces of a chat chunk.
	ToolCalls []ToolCallDelta
	// Response is the full response object of a terminal Responses event (raw JSON).
	Response string
}

// StreamKind is the event grammar of a stream.
type StreamKind int

const (
	// KindChat: chat completion and legacy completion chunks, ended by [DONE].
	KindChat StreamKind = iota
	// KindResponses: Responses API events, ended by a terminal response event.
	KindResponses
)

// KindOf returns the stream kind of an operation.
func KindOf(op Op) StreamKind {
	if op == OpResponses {
		return KindResponses
	}
	return KindChat
}

// ErrMalformed reports an event or body that is not the JSON it claims to be.
var ErrMalformed = errors.New("llmwire: malformed JSON")

// ParseEvent reads the data of one stream event (name is its "event:" field, used only
// to tell a Responses event whose JSON lacks a type). Data that is not JSON (a comment,
// an empty keep-alive) is an Event with nothing set; malformed JSON is ErrMalformed.
func ParseEvent(kind StreamKind, name, data []byte) (Event, error) {
	var ev Event
	if kind == KindChat && string(data) == "[DONE]" {
		ev.Done, ev.Terminal = true, true
		return ev, nil
	}
	if len(data) == 0 || (data[0] != '{' && data[0] != '[') {
		return ev, nil
	}
	if !gjson.ValidBytes(data) {
		return ev, ErrMalformed
	}
	doc := gjson.ParseBytes(data)
	if kind == KindResponses {
		responsesEvent(doc, string(name), &ev)
	} else {
		chatChunk(doc, &ev)
	}
	return ev, nil
}

// chatChunk reads a chat completion (or legacy completion) chunk.
func chatChunk(doc gjson.Result, ev *Event) {
	choices, finished := 0, 0
	doc.ForEach(func(k, v gjson.Result) bool {
		if ev.read(k.Str, v) {
			return true
		}
		switch k.Str {
		case "choices":
			v.ForEach(func(_, ch gjson.Result) bool {
				choices++
				if chunkChoice(ch, ev) {
					finished++
				}
				return true
			})
			ev.Choices = choices > 0
			ev.Terminal = ev.Choices && finished == choices
		}
		return true
	})
	ev.UsageOnly = !ev.Choices && ev.Usage.Has
}

// chunkChoice reads one choice of a chunk into ev and reports whether it carries a
// finish reason. It reads the choice once; its delta is read after, when the choice's
// index (which tool calls carry) is known whatever the members' order.
func chunkChoice(ch gjson.Result, ev *Event) (finished bool) {
	index := 0
	var d gjson.Result
	ch.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "index":
			index = int(v.Int())
		case "text": // legacy completions
			if s := v.String(); s != "" {
				ev.Output = true
				ev.Text += s
			}
		case "delta", "message":
			d = v
		case "finish_reason":
			if v.Type == gjson.String && v.Str != "" {
				ev.FinishReasons = append(ev.FinishReasons, v.Str)
				finished = true
			}
		}
		return true
	})
	if index != 0 {
		ev.OtherChoice = true
	}
	if d.Exists() {
		delta(d, index, ev)
	}
	return finished
}

// delta reads a choice's delta: content, refusal, reasoning and tool calls are output;
// a role alone is not.
func delta(d gjson.Result, choice int, ev *Event) {
	d.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "content":
			if s := v.String(); s != "" {
				ev.Output = true
				ev.Text += s
			}
		case "refusal":
			if s := v.String(); s != "" {
				ev.Output = true
				ev.Refusal += s
			}
		case "reasoning_content", "reasoning":
			if v.String() != "" {
				ev.Output = true
			}
		case "function_call":
			if v.IsObject() {
				ev.Output = true
			}
		case "tool_calls":
			v.ForEach(func(_, tc gjson.Result) bool {
				ev.Output = true
				f := tc.Get("function")
				ev.ToolCalls = append(ev.ToolCalls, ToolCallDelta{
					Choice:    choice,
					Index:     int(tc.Get("index").Int()),
					ID:        tc.Get("id").String(),
					Type:      tc.Get("type").String(),
					Name:      f.Get("name").String(),
					Arguments: f.Get("arguments").String(),
				})
				return true
			})
		}
		return true
	})
}

// responsesEvent reads a Responses API stream event.
func responsesEvent(doc gjson.Result, name string, ev *Event) {
	ev.Type = doc.Get("type").String()
	if ev.Type == "" {
		ev.Type = name
	}
	switch t := ev.Type; {
	case t == "error":
		if e := doc.Get("error"); e.IsObject() {
			ev.Error = errorObject(e)
			break
		}
		ev.Error = errorObject(doc)
		ev.Error.Type = "" // the event's own type, not the error's
	case t == "response.completed" || t == "response.incomplete" || t == "response.failed":
		ev.Terminal = true
		resp := doc.Get("response")
		ev.Response = resp.Raw
		b := responseBody(resp, true)
		ev.Model, ev.ID, ev.Usage, ev.FinishReasons = b.Model, b.ID, b.Usage, b.FinishReasons
		if t == "response.failed" {
			ev.Error = b.Error
			if ev.Error == nil {
				ev.Error = &ErrorObject{Type: "server_error", Message: "response failed"}
			}
		}
	case t == "response.created" || t == "response.in_progress" || t == "response.queued":
		resp := doc.Get("response")
		ev.Model, ev.ID = resp.Get("model").String(), resp.Get("id").String()
	case strings.HasSuffix(t, ".delta"):
		ev.Output = true
		if t == "response.output_text.delta" {
			ev.Text = doc.Get("delta").String()
		}
	case strings.HasSuffix(t, ".done"), strings.HasSuffix(t, ".partial_image"):
		// A server that sends whole parts without deltas has produced output by now.
		ev.Output = true
	}
}

// errorObject reads an OpenAI error object; a null or absent one is nil.
func errorObject(v gjson.Result) *ErrorObject {
	if !v.IsObject() {
		return nil
	}
	e := &ErrorObject{
		Message: v.Get("message").String(),
		Type:    v.Get("type").String(),
		Param:   v.Get("param").String(),
	}
	if c := v.Get("code"); c.Type == gjson.String || c.Type == gjson.Number {
		e.Code = c.String()
	}
	return e
}

// usage reads a usage object of any operation: chat and completions (prompt_tokens,
// completion_tokens), embeddings (prompt_tokens only) and the Responses API
// (input_tokens, output_tokens).
func usage(v gjson.Result) Usage {
	if !v.IsObject() {
		return Usage{}
	}
	u := Usage{Has: true, InputTokens: -1, OutputTokens: -1, Total: -1}
	v.ForEach(func(k, n gjson.Result) bool {
		switch k.Str {
		case "prompt_tokens", "input_tokens":
			u.InputTokens = n.Int()
		case "completion_tokens", "output_tokens":
			u.OutputTokens = n.Int()
		case "total_tokens":
			u.Total = n.Int()
		case "completion_tokens_details", "output_tokens_details":
			u.ReasoningTokens = n.Get("reasoning_tokens").Int()
		case "prompt_tokens_details", "input_tokens_details":
			u.CachedInputTokens = n.Get("cached_tokens").Int()
		}
		return true
	})
	return u
}
