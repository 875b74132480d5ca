package llmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// chatRoles are the message roles the API accepts.
var chatRoles = []string{"system", "assistant", "user", "function", "tool", "developer"}

// chatRequest is what the server uses of a chat completion request.
type chatRequest struct {
	model        string
	stream       bool
	includeUsage bool
	maxTokens    int
	promptTokens int
	call         *functionTool // the function the answer must call; nil: text
}

// parseChat validates a chat completion request body.
func (s *Server) parseChat(body []byte) (chatRequest, *apiError) {
	var req chatRequest
	f, e := s.parseFields(body)
	if e != nil {
		return req, e
	}
	if req.model, e = s.model(f); e != nil {
		return req, e
	}
	if req.promptTokens, e = chatMessages(f["messages"]); e != nil {
		return req, e
	}
	if req.stream, req.includeUsage, e = streamFlags(f); e != nil {
		return req, e
	}
	if req.maxTokens, e = maxTokens(f); e != nil {
		return req, e
	}
	req.call, e = requestTools(f, chatTools)
	return req, e
}

// chatMessages validates the messages array and returns the prompt tokens.
func chatMessages(raw json.RawMessage) (int, *apiError) {
	if isNull(raw) {
		return 0, missing("messages")
	}
	var msgs []json.RawMessage
	if json.Unmarshal(raw, &msgs) != nil {
		return 0, invalidType("messages", "an array of objects", raw)
	}
	if len(msgs) == 0 {
		return 0, invalidRequest("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
			"messages", "empty_array")
	}
	tokens := ReplyTokens
	for i, m := range msgs {
		param := fmt.Sprintf("messages[%d]", i)
		msg, e := parseObjectAt(m, param)
		if e != nil {
			return 0, e
		}
		if e := checkRole(msg, param, chatRoles); e != nil {
			return 0, e
		}
		text, e := messageText(msg["content"], param+".content")
		if e != nil {
			return 0, e
		}
		tokens += MessageTokens + text
	}
	return tokens, nil
}

// messageText returns the tokens of a message's content: a string, or an array of parts
// whose "text" fields count.
func messageText(raw json.RawMessage, param string) (int, *apiError) {
	if isNull(raw) {
		return 0, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return CountTokens(s), nil
	}
	var parts []json.RawMessage
	if json.Unmarshal(raw, &parts) != nil {
		return 0, invalidType(param, "one of a string or array of objects", raw)
	}
	n := 0
	for i, p := range parts {
		pp := fmt.Sprintf("%s[%d]", param, i)
		var part fields
		if json.Unmarshal(p, &part) != nil || part == nil {
			return 0, invalidType(pp, "an object", p)
		}
		text, e := str(part["text"], pp+".text")
		if e != nil {
			return 0, e
		}
		n += CountTokens(text)
	}
	return n, nil
}

// An answer is what the server generates for a request: text of `chunks` content chunks,
// or a call of a function the request forces.
type answer struct {
	chunks int
	// finish is the chat finish reason: "stop", "length" (the text was cut by the token
	// limit) or "tool_calls".
	finish string
	call   *toolCall
}

// answerFor returns the answer to a request with a token limit (0: none) that forces a call
// of fn (nil: text). A tool call is never cut by the limit.
func (s *Server) answerFor(limit int, fn *functionTool) answer {
	if fn != nil {
		c := callFor(fn, s.cfg.chunks)
		return answer{finish: "tool_calls", call: &c}
	}
	chunks := s.cfg.chunks
	per := CountTokens(s.cfg.chunkText)
	if limit > 0 && per > 0 && chunks*per > limit {
		return answer{chunks: limit / per, finish: "length"}
	}
	return answer{chunks: chunks, finish: "stop"}
}

// text returns the answer's whole text.
func (s *Server) text(a answer) string { return strings.Repeat(s.cfg.chunkText, a.chunks) }

// completionTokens returns the tokens the server counts for an answer: chunks × the words
// of the chunk text, or one per delta of a tool call's arguments.
func (s *Server) completionTokens(a answer) int {
	if a.call != nil {
		return len(a.call.pieces)
	}
	return a.chunks * CountTokens(s.cfg.chunkText)
}

// usage is the token usage object of chat and text completions.
type usage struct {
	PromptTokens            int            `json:"prompt_tokens"`
	CompletionTokens        int            `json:"completion_tokens"`
	TotalTokens             int            `json:"total_tokens"`
	PromptTokensDetails     map[string]int `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails map[string]int `json:"completion_tokens_details,omitempty"`
}

func usageFor(prompt, completion int, details bool) usage {
	u := usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
	if details {
		u.PromptTokensDetails = map[string]int{"cached_tokens": 0, "audio_tokens": 0}
		u.CompletionTokensDetails = map[string]int{"reasoning_tokens": 0, "audio_tokens": 0,
			"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
	}
	return u
}

// fingerprint is the system_fingerprint of every completion.
const fingerprint = "fp_llmtest"

type chatMessage struct {
	Role      string         `json:"role"`
	Content   *string        `json:"content"`
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
	Refusal   *string        `json:"refusal"`
}

// chatToolCall is a tool call of a chat message, and (with Index) of a stream delta.
type chatToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      chatMessage     `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []chatChoice `json:"choices"`
	Usage             usage        `json:"usage"`
	ServiceTier       string       `json:"service_tier"`
	SystemFingerprint string       `json:"system_fingerprint"`
}

type chatDelta struct {
	Role      string         `json:"role,omitempty"`
	Content   *string        `json:"content,omitempty"`
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
	Refusal   *string        `json:"refusal,omitempty"`
}

type chatChunkChoice struct {
	Index        int             `json:"index"`
	Delta        chatDelta       `json:"delta"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type chatChunk struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Created           int64             `json:"created"`
	Model             string            `json:"model"`
	ServiceTier       string            `json:"service_tier"`
	SystemFingerprint string            `json:"system_fingerprint"`
	Choices           []chatChunkChoice `json:"choices"`
	Usage             json.RawMessage   `json:"usage,omitempty"`
}

var jsonNull = json.RawMessage("null")

// mustJSON marshals values built from plain types, which cannot fail, without escaping
// HTML characters (as the API does not).
func mustJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// chat answers POST /v1/chat/completions.
func (x *exchange) chat() {
	req, e := x.s.parseChat(x.body)
	if e != nil {
		x.writeAPIError(e)
		return
	}
	a, ok := x.generate(req.model, req.promptTokens, req.maxTokens, req.call)
	if !ok {
		return
	}
	id := "chatcmpl-" + strconv.Itoa(x.rec.Seq)
	u := usageFor(req.promptTokens, x.s.completionTokens(a), true)
	if !req.stream {
		msg := chatMessage{Role: "assistant"}
		if a.call != nil {
			msg.ToolCalls = []chatToolCall{{ID: callID(x.rec.Seq), Type: "function",
				Function: chatFunction{Name: a.call.name, Arguments: a.call.arguments()}}}
		} else {
			text := x.s.text(a)
			msg.Content = &text
		}
		x.respondJSON(append(mustJSON(chatCompletion{
			ID: id, Object: "chat.completion", Created: x.created, Model: req.model,
			Choices: []chatChoice{{Message: msg, Logprobs: jsonNull, FinishReason: a.finish}},
			Usage:   u, ServiceTier: "default", SystemFingerprint: fingerprint,
		}), '\n'))
		return
	}
	x.stream(x.chatStream(id, req, a, u))
}

// callID is the id of the tool call answering request seq.
func callID(seq int) string { return "call_" + strconv.Itoa(seq) }

// chatStream returns the plan of a streamed chat completion.
func (x *exchange) chatStream(id string, req chatRequest, a answer, u usage) *streamPlan {
	var usageField json.RawMessage
	if req.includeUsage {
		usageField = jsonNull
	}
	chunk := func(d chatDelta, finish *string) streamEvent {
		return fixedEvent(mustJSON(chatChunk{
			ID: id, Object: "chat.completion.chunk", Created: x.created, Model: req.model,
			ServiceTier: "default", SystemFingerprint: fingerprint,
			Choices: []chatChunkChoice{{Delta: d, Logprobs: jsonNull, FinishReason: finish}},
			Usage:   usageField,
		}))
	}
	argsChunk := func(args string) streamEvent {
		zero := 0
		return chunk(chatDelta{ToolCalls: []chatToolCall{{Index: &zero, Function: chatFunction{Arguments: args}}}}, nil)
	}
	p := &streamPlan{
		done:       true,
		terminal:   []streamEvent{chunk(chatDelta{}, &a.finish)},
		errorEvent: chunkError,
	}
	if a.call != nil {
		zero, call := 0, a.call
		header := chunk(chatDelta{Role: "assistant", ToolCalls: []chatToolCall{{
			Index: &zero, ID: callID(x.rec.Seq), Type: "function", Function: chatFunction{Name: call.name},
		}}}, nil)
		p.outputs = 1 + len(call.pieces)
		p.output = func(i int) streamEvent {
			if i == 0 {
				return header
			}
			return argsChunk(call.pieces[i-1])
		}
		p.padded = func(n int) streamEvent { return argsChunk(padSpaces(n)) }
	} else {
		empty, text := "", x.s.cfg.chunkText
		content := chunk(chatDelta{Content: &text}, nil)
		p.head = []streamEvent{chunk(chatDelta{Role: "assistant", Content: &empty}, nil)}
		p.outputs = a.chunks
		p.output = func(int) streamEvent { return content }
		p.padded = func(n int) streamEvent {
			pad := padText(n)
			return chunk(chatDelta{Content: &pad}, nil)
		}
	}
	if req.includeUsage {
		p.terminal = append(p.terminal, fixedEvent(mustJSON(chatChunk{
			ID: id, Object: "chat.completion.chunk", Created: x.created, Model: req.model,
			ServiceTier: "default", SystemFingerprint: fingerprint,
			Choices: []chatChunkChoice{}, Usage: mustJSON(u),
		})))
	}
	return p
}
