package llmwire

import (
	"encoding/json"
	"sort"
)

// Accumulator puts a stream's events together into the complete non-streamed reply
// they stand for, so that a stream that ended well can be kept as the last good answer:
// a chat.completion (tool calls, refusal and finish reason included) or a
// text_completion for chat streams, the terminal event's response object for Responses
// API streams. It keeps at most limit bytes of text; past that it gives up, and Body
// reports false.
type Accumulator struct {
	kind    StreamKind
	op      Op
	limit   int
	size    int
	broken  bool // past the limit, or a shape it does not keep (n > 1 choices)
	id      string
	model   string
	text    []byte
	refusal []byte
	calls   map[int]*toolCall
	finish  string
	usage   Usage
	resp    string
}

type toolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// NewAccumulator returns an accumulator for a stream of op that keeps at most limit
// bytes.
func NewAccumulator(op Op, limit int) *Accumulator {
	return &Accumulator{kind: KindOf(op), op: op, limit: limit}
}

// Add takes one event of the stream.
func (a *Accumulator) Add(ev *Event) {
	if a.broken {
		return
	}
	if a.kind == KindResponses {
		if ev.Terminal && ev.Error == nil {
			a.resp = ev.Response
			a.grow(len(ev.Response))
		}
		return
	}
	if ev.OtherChoice {
		a.broken = true
		return
	}
	if a.id == "" {
		a.id = ev.ID
	}
	if a.model == "" {
		a.model = ev.Model
	}
	a.text = append(a.text, ev.Text...)
	a.refusal = append(a.refusal, ev.Refusal...)
	a.grow(len(ev.Text) + len(ev.Refusal))
	for _, d := range ev.ToolCalls {
		if a.calls == nil {
			a.calls = make(map[int]*toolCall)
		}
		c := a.calls[d.Index]
		if c == nil {
			c = &toolCall{Type: "function"}
			a.calls[d.Index] = c
		}
		if d.ID != "" {
			c.ID = d.ID
		}
		if d.Type != "" {
			c.Type = d.Type
		}
		c.Function.Name += d.Name
		c.Function.Arguments += d.Arguments
		a.grow(len(d.Name) + len(d.Arguments))
	}
	if len(ev.FinishReasons) > 0 {
		a.finish = ev.FinishReasons[len(ev.FinishReasons)-1]
	}
	if ev.Usage.Has {
		a.usage = ev.Usage
	}
}

func (a *Accumulator) grow(n int) {
	if a.size += n; a.size > a.limit {
		a.broken = true
		a.text, a.refusal, a.calls, a.resp = nil, nil, nil, ""
	}
}

// Body returns the complete reply, or false when the accumulator gave up or saw no
// proper end.
func (a *Accumulator) Body() ([]byte, bool) {
	if a.broken {
		return nil, false
	}
	if a.kind == KindResponses {
		return []byte(a.resp), a.resp != ""
	}
	if a.finish == "" {
		return nil, false
	}
	return a.completion(), true
}

type completionUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

type chatMessage struct {
	Role      string      `json:"role"`
	Content   *string     `json:"content"`
	Refusal   *string     `json:"refusal,omitempty"`
	ToolCalls []*toolCall `json:"tool_calls,omitempty"`
}

type completionChoice struct {
	Index        int          `json:"index"`
	Message      *chatMessage `json:"message,omitempty"`
	Text         *string      `json:"text,omitempty"`
	FinishReason string       `json:"finish_reason"`
}

type completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *completionUsage   `json:"usage,omitempty"`
}

func (a *Accumulator) completion() []byte {
	c := completion{ID: a.id, Model: a.model}
	ch := completionChoice{FinishReason: a.finish}
	text := string(a.text)
	if a.op == OpCompletions {
		c.Object, ch.Text = "text_completion", &text
	} else {
		c.Object = "chat.completion"
		m := &chatMessage{Role: "assistant"}
		if text != "" || len(a.calls) == 0 {
			m.Content = &text
		}
		if len(a.refusal) > 0 {
			r := string(a.refusal)
			m.Refusal = &r
		}
		idx := make([]int, 0, len(a.calls))
		for i := range a.calls {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		for _, i := range idx {
			m.ToolCalls = append(m.ToolCalls, a.calls[i])
		}
		ch.Message = m
	}
	c.Choices = []completionChoice{ch}
	if a.usage.Has {
		c.Usage = &completionUsage{max(a.usage.InputTokens, 0), max(a.usage.OutputTokens, 0), max(a.usage.Total, 0)}
		if c.Usage.TotalTokens == 0 {
			c.Usage.TotalTokens = c.Usage.PromptTokens + c.Usage.CompletionTokens
		}
	}
	b, _ := json.Marshal(c) // plain strings and numbers: it cannot fail
	return b
}
