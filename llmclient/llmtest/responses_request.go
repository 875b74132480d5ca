package llmtest

import (
	"encoding/json"
	"fmt"
)

// responsesRequest is what the server uses of a Responses API request.
type responsesRequest struct {
	model        string
	stream       bool
	instructions *string
	maxOutput    int
	inputTokens  int
	call         *functionTool   // the function the answer must call; nil: text
	tools        json.RawMessage // echoed in the response
	toolChoice   json.RawMessage // echoed in the response
}

// responseRoles are the roles of a Responses input message.
var responseRoles = []string{"assistant", "system", "developer", "user"}

// minOutputTokens is the smallest max_output_tokens the API accepts.
const minOutputTokens = 16

// parseResponses validates a Responses API request body.
func (s *Server) parseResponses(body []byte) (responsesRequest, *apiError) {
	var req responsesRequest
	f, e := s.parseFields(body)
	if e != nil {
		return req, e
	}
	if !f.present("model") {
		return req, missing("model")
	}
	if req.model, e = s.model(f); e != nil {
		return req, e
	}
	instructions, e := str(f["instructions"], "instructions")
	if e != nil {
		return req, e
	}
	req.inputTokens = ReplyTokens
	if f.present("instructions") {
		req.instructions = &instructions
		req.inputTokens += MessageTokens + CountTokens(instructions)
	}
	n, e := responseInput(f["input"])
	if e != nil {
		return req, e
	}
	req.inputTokens += n
	if req.stream, _, e = streamFlags(f); e != nil {
		return req, e
	}
	limit, e := integer(f["max_output_tokens"], "max_output_tokens", minOutputTokens, 1<<31-1)
	if e != nil {
		return req, e
	}
	req.maxOutput = int(limit)
	if req.call, e = requestTools(f, flatTools); e != nil {
		return req, e
	}
	req.tools, req.toolChoice = json.RawMessage("[]"), json.RawMessage(`"auto"`)
	if f.present("tools") {
		req.tools = f["tools"]
	}
	if f.present("tool_choice") {
		req.toolChoice = f["tool_choice"]
	}
	return req, nil
}

// responseInput validates a Responses input, a string or an array of input items, and
// returns its tokens: MessageTokens + the words of each item's text (a string input is one
// user message).
func responseInput(raw json.RawMessage) (int, *apiError) {
	if isNull(raw) {
		return 0, missing("input")
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return MessageTokens + CountTokens(text), nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return 0, invalidType("input", "one of a string or array of objects", raw)
	}
	if len(items) == 0 {
		return 0, invalidRequest("Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
			"input", "empty_array")
	}
	tokens := 0
	for i, it := range items {
		n, e := inputItem(it, fmt.Sprintf("input[%d]", i))
		if e != nil {
			return 0, e
		}
		tokens += MessageTokens + n
	}
	return tokens, nil
}

// inputItem validates one input item and returns the words of its text: a message's content,
// a function call's arguments, a function call output's output. Other item types (reasoning,
// item references, hosted tool calls) are accepted and hold no text.
func inputItem(raw json.RawMessage, param string) (int, *apiError) {
	item, e := parseObjectAt(raw, param)
	if e != nil {
		return 0, e
	}
	typ, e := str(item["type"], param+".type")
	if e != nil {
		return 0, e
	}
	switch typ {
	case "", "message":
		return inputMessage(item, param)
	case "function_call":
		for _, k := range []string{"call_id", "name", "arguments"} {
			if !item.present(k) {
				return 0, missing(param + "." + k)
			}
		}
		args, e := requiredStrings(item, param, "call_id", "name", "arguments")
		return CountTokens(args), e
	case "function_call_output":
		if !item.present("call_id") {
			return 0, missing(param + ".call_id")
		}
		if _, e := requiredStrings(item, param, "call_id"); e != nil {
			return 0, e
		}
		if !item.present("output") {
			return 0, missing(param + ".output")
		}
		return messageText(item["output"], param+".output")
	}
	return 0, nil
}

// requiredStrings checks that the keys of item hold strings and returns the last one.
func requiredStrings(item fields, param string, keys ...string) (string, *apiError) {
	var last string
	for _, k := range keys {
		v, e := str(item[k], param+"."+k)
		if e != nil {
			return "", e
		}
		last = v
	}
	return last, nil
}

// inputMessage validates an input message and returns the words of its content.
func inputMessage(item fields, param string) (int, *apiError) {
	if e := checkRole(item, param, responseRoles); e != nil {
		return 0, e
	}
	if !item.present("content") {
		return 0, missing(param + ".content")
	}
	return messageText(item["content"], param+".content")
}
