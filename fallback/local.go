package fallback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/infermesh/infermesh/internal/llmwire"
)

// Message is one chat message of the request, as a [ReplyFunc] sees it.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Messages decodes the messages of r: a chat call's messages, a Responses API call's
// instructions (as a system message) and input (a string, or a list of messages), or a
// legacy completion's prompt (as one user message). Content given as an array of parts
// keeps only its text parts, joined.
func (r *Request) Messages() ([]Message, error) {
	var req struct {
		Messages     []rawMessage    `json:"messages"`
		Prompt       json.RawMessage `json:"prompt"`
		Instructions string          `json:"instructions"`
		Input        json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(r.Body, &req); err != nil {
		return nil, fmt.Errorf("fallback: decode request body: %w", err)
	}
	switch llmwire.OpOf(r.Operation) {
	case llmwire.OpResponses:
		return responsesMessages(req.Instructions, req.Input)
	case llmwire.OpCompletions:
		var p string
		if err := json.Unmarshal(req.Prompt, &p); err != nil {
			var ps []string
			if err2 := json.Unmarshal(req.Prompt, &ps); err2 != nil {
				return nil, fmt.Errorf("fallback: prompt is neither a string nor a list of strings")
			}
			for i, s := range ps {
				if i > 0 {
					p += "\n"
				}
				p += s
			}
		}
		return []Message{{Role: "user", Content: p}}, nil
	}
	return textMessages("messages", req.Messages)
}

type rawMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

func textMessages(field string, ms []rawMessage) ([]Message, error) {
	out := make([]Message, 0, len(ms))
	for i, m := range ms {
		text, err := contentText(m.Content)
		if err != nil {
			return nil, fmt.Errorf("fallback: %s[%d].content: %w", field, i, err)
		}
		out = append(out, Message{Role: m.Role, Content: text})
	}
	return out, nil
}

// responsesMessages reads a Responses API call's instructions and input.
func responsesMessages(instructions string, input json.RawMessage) ([]Message, error) {
	var out []Message
	if instructions != "" {
		out = append(out, Message{Role: "system", Content: instructions})
	}
	var s string
	if err := json.Unmarshal(input, &s); err == nil {
		return append(out, Message{Role: "user", Content: s}), nil
	}
	var items []rawMessage
	if err := json.Unmarshal(input, &items); err != nil {
		return nil, errors.New("fallback: input is neither a string nor a list of messages")
	}
	ms, err := textMessages("input", items)
	return append(out, ms...), err
}

func contentText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("neither a string nor a list of content parts")
	}
	var text string
	for _, p := range parts {
		if p.Type == "text" || p.Type == "input_text" || p.Type == "output_text" {
			if text != "" {
				text += "\n"
			}
			text += p.Text
		}
	}
	return text, nil
}

// ReplyFunc computes a reply in-process, for example from a rule set, a small embedded
// model or a canned message chosen by the request.
type ReplyFunc func(ctx context.Context, r *Request) (Reply, error)

// Func returns a target that answers chat, legacy completion and Responses API calls
// with fn's reply, each in its own wire shape; it answers other operations (embeddings,
// say) with ErrUnsupported, so the chain moves on. Its spans are INTERNAL, not CLIENT:
// nothing leaves the process.
func Func(name string, fn ReplyFunc) Target {
	return &funcTarget{name: name, fn: fn}
}

type funcTarget struct {
	name string
	fn   ReplyFunc
}

func (t *funcTarget) Name() string { return t.name }

// InProcess reports that the target runs inside this process.
func (t *funcTarget) InProcess() bool { return true }

func (t *funcTarget) Serve(ctx context.Context, r *Request) (*http.Response, error) {
	switch llmwire.OpOf(r.Operation) {
	case llmwire.OpChat, llmwire.OpCompletions, llmwire.OpResponses:
	default:
		return nil, ErrUnsupported
	}
	rep, err := t.fn(ctx, r)
	if err != nil {
		return nil, err
	}
	return render(r, t.name, rep)
}

// Static returns a target that answers every chat, legacy completion and Responses API
// call with the same text, for example "The assistant is busy; please try again
// shortly.", and other operations with ErrUnsupported.
func Static(name, content string) Target {
	return &funcTarget{name: name, fn: func(context.Context, *Request) (Reply, error) {
		return Reply{Content: content}, nil
	}}
}

// InProcess is implemented by targets that run inside this process (a [Func], a
// [Static] reply, a [Cache]); tracing marks their spans INTERNAL.
type InProcess interface {
	InProcess() bool
}
