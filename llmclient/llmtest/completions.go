package llmtest

import (
	"encoding/json"
	"strconv"
)

// maxPrompts bounds the prompts of a text completion request and the inputs of an
// embeddings request, as the API does.
const maxPrompts = 2048

// completionRequest is what the server uses of a text completion request.
type completionRequest struct {
	model        string
	stream       bool
	includeUsage bool
	maxTokens    int
	promptTokens int
}

// parseCompletion validates a text completion request body.
func (s *Server) parseCompletion(body []byte) (completionRequest, *apiError) {
	var req completionRequest
	f, e := s.parseFields(body)
	if e != nil {
		return req, e
	}
	if req.model, e = s.model(f); e != nil {
		return req, e
	}
	prompts, e := textInputs(f["prompt"], "prompt", maxPrompts)
	if e != nil {
		return req, e
	}
	for _, p := range prompts {
		req.promptTokens += p.tokenCount()
	}
	if req.stream, req.includeUsage, e = streamFlags(f); e != nil {
		return req, e
	}
	req.maxTokens, e = maxTokens(f)
	return req, e
}

type completionChoice struct {
	Text         string          `json:"text"`
	Index        int             `json:"index"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type textCompletion struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Choices           []completionChoice `json:"choices"`
	Usage             json.RawMessage    `json:"usage,omitempty"`
}

// completions answers POST /v1/completions.
func (x *exchange) completions() {
	req, e := x.s.parseCompletion(x.body)
	if e != nil {
		x.writeAPIError(e)
		return
	}
	id := "cmpl-" + strconv.Itoa(x.rec.Seq)
	a, ok := x.generate(req.model, req.promptTokens, req.maxTokens, nil)
	if !ok {
		return
	}
	chunks, finish := a.chunks, a.finish
	u := mustJSON(usageFor(req.promptTokens, x.s.completionTokens(a), false))
	body := func(text string, finish *string, usage json.RawMessage, choices bool) []byte {
		c := textCompletion{
			ID: id, Object: "text_completion", Created: x.created, Model: req.model,
			SystemFingerprint: fingerprint, Choices: []completionChoice{}, Usage: usage,
		}
		if choices {
			c.Choices = append(c.Choices, completionChoice{Text: text, Logprobs: jsonNull, FinishReason: finish})
		}
		return mustJSON(c)
	}
	if !req.stream {
		x.respondJSON(append(body(x.s.text(a), &finish, u, true), '\n'))
		return
	}
	var usageField json.RawMessage
	if req.includeUsage {
		usageField = jsonNull
	}
	content := fixedEvent(body(x.s.cfg.chunkText, nil, usageField, true))
	p := &streamPlan{
		outputs:    chunks,
		output:     func(int) streamEvent { return content },
		terminal:   []streamEvent{fixedEvent(body("", &finish, usageField, true))},
		done:       true,
		padded:     func(n int) streamEvent { return fixedEvent(body(padText(n), nil, usageField, true)) },
		errorEvent: chunkError,
	}
	if req.includeUsage {
		p.terminal = append(p.terminal, fixedEvent(body("", nil, u, false)))
	}
	x.stream(p)
}
