package fallback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Message is one chat message of the request, as a [ReplyFunc] sees it.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Messages decodes the chat messages of r. Content given as an array of parts keeps
// only its text parts, joined.
func (r *Request) Messages() ([]Message, error) {
	var req struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Prompt json.RawMessage `json:"prompt"`
	}
	if err := json.Unmarshal(r.Body, &req); err != nil {
		return nil, fmt.Errorf("fallback: decode request body: %w", err)
	}
	if r.Operation == "/completions" {
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
	out := make([]Message, 0, len(req.Messages))
	for i, m := range req.Messages {
		text, err := contentText(m.Content)
		if err != nil {
			return nil, fmt.Errorf("fallback: messages[%d].content: %w", i, err)
		}
		out = append(out, Message{Role: m.Role, Content: text})
	}
	return out, nil
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
		if p.Type == "text" {
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

// Func returns a target that answers chat and legacy completion calls with fn's reply.
// Its spans are INTERNAL, not CLIENT: nothing leaves the process.
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
	if r.Operation != "/chat/completions" && r.Operation != "/completions" {
		return nil, ErrUnsupported
	}
	rep, err := t.fn(ctx, r)
	if err != nil {
		return nil, err
	}
	return render(r, t.name, rep)
}

// Static returns a target that answers every chat and legacy completion call with the
// same text, for example "The assistant is busy; please try again shortly."
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
