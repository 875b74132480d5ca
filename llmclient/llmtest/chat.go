package llmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
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
}

// parseChat validates a chat completion request body.
func (s *Server) parseChat(body []byte) (chatRequest, *apiError) {
	var req chatRequest
	f, e := parseObject(body)
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
	req.maxTokens, e = maxTokens(f)
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
		var msg fields
		if json.Unmarshal(m, &msg) != nil || msg == nil {
			return 0, invalidType(param, "an object", m)
		}
		if !msg.present("role") {
			return 0, missing(param + ".role")
		}
		role, e := str(msg["role"], param+".role")
		if e != nil {
			return 0, e
		}
		if !slices.Contains(chatRoles, role) {
			return 0, invalidRequest(fmt.Sprintf("Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.", role),
				param+".role", "invalid_value")
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

// completionLength returns how many content chunks a response carries under a token limit
// (0: none), and its finish reason.
func (s *Server) completionLength(limit int) (chunks int, finish string) {
	chunks = s.cfg.chunks
	per := CountTokens(s.cfg.chunkText)
	if limit > 0 && per > 0 && chunks*per > limit {
		return limit / per, "length"
	}
	return chunks, "stop"
}

// usage is the token usage object of chat and text completions.
type usage struct {
	PromptTokens            int            `json:"prompt_tokens"`
	CompletionTokens        int            `json:"completion_tokens"`
	TotalTokens             int            `json:"total_tokens"`
	PromptTokensDetails     map[string]int `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails map[string]int `json:"completion_tokens_details,omitempty"`
}

func (s *Server) usageFor(prompt, chunks int, details bool) usage {
	completion := chunks * CountTokens(s.cfg.chunkText)
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
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
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
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
	Refusal *string `json:"refusal,omitempty"`
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
	id := "chatcmpl-" + strconv.Itoa(x.rec.Seq)
	chunks, finish := x.s.completionLength(req.maxTokens)
	u := x.s.usageFor(req.promptTokens, chunks, true)
	if !req.stream {
		x.respondJSON(append(mustJSON(chatCompletion{
			ID: id, Object: "chat.completion", Created: x.created, Model: req.model,
			Choices: []chatChoice{{
				Message:      chatMessage{Role: "assistant", Content: strings.Repeat(x.s.cfg.chunkText, chunks)},
				Logprobs:     jsonNull,
				FinishReason: finish,
			}},
			Usage: u, ServiceTier: "default", SystemFingerprint: fingerprint,
		}), '\n'))
		return
	}
	var usageField json.RawMessage
	if req.includeUsage {
		usageField = jsonNull
	}
	chunk := func(d chatDelta, finish *string) []byte {
		return mustJSON(chatChunk{
			ID: id, Object: "chat.completion.chunk", Created: x.created, Model: req.model,
			ServiceTier: "default", SystemFingerprint: fingerprint,
			Choices: []chatChunkChoice{{Delta: d, Logprobs: jsonNull, FinishReason: finish}},
			Usage:   usageField,
		})
	}
	empty, text := "", x.s.cfg.chunkText
	p := streamPlan{
		role:    chunk(chatDelta{Role: "assistant", Content: &empty, Refusal: nil}, nil),
		content: chunk(chatDelta{Content: &text}, nil),
		chunks:  chunks,
		padded: func(n int) []byte {
			pad := padText(n)
			return chunk(chatDelta{Content: &pad}, nil)
		},
		final: chunk(chatDelta{}, &finish),
	}
	if req.includeUsage {
		p.usage = mustJSON(chatChunk{
			ID: id, Object: "chat.completion.chunk", Created: x.created, Model: req.model,
			ServiceTier: "default", SystemFingerprint: fingerprint,
			Choices: []chatChunkChoice{}, Usage: mustJSON(u),
		})
	}
	x.stream(p)
}
