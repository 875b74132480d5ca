package llmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Function tools. With function tools and a tool_choice that forces a call ("required", or
// one function by name), the server answers with a call of that function (the first function
// tool for "required") instead of text. Otherwise tools are validated and echoed, and the
// answer is text.

// A functionTool is a function a request offers the model.
type functionTool struct {
	name   string
	params fields // the JSON schema of the arguments; nil if none
}

// toolShape says where a request's tool fields sit.
type toolShape int

const (
	// chatTools: {"type":"function","function":{"name":...,"parameters":...}} and tool_choice
	// {"type":"function","function":{"name":...}}.
	chatTools toolShape = iota
	// flatTools (Responses): {"type":"function","name":...,"parameters":...} and tool_choice
	// {"type":"function","name":...}.
	flatTools
)

// functionNamePattern is what the API accepts as a function name.
var functionNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// parseTools validates the tools array and returns its function tools and the number of
// tools of any type.
func parseTools(raw json.RawMessage, shape toolShape) ([]functionTool, int, *apiError) {
	if isNull(raw) {
		return nil, 0, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, 0, invalidType("tools", "an array of objects", raw)
	}
	var tools []functionTool
	for i, it := range items {
		param := fmt.Sprintf("tools[%d]", i)
		t, e := parseObjectAt(it, param)
		if e != nil {
			return nil, 0, e
		}
		if !t.present("type") {
			return nil, 0, missing(param + ".type")
		}
		typ, e := str(t["type"], param+".type")
		if e != nil {
			return nil, 0, e
		}
		if typ != "function" {
			continue // other tool types (web_search, custom, ...) are accepted and ignored
		}
		if shape == chatTools {
			if !t.present("function") {
				return nil, 0, missing(param + ".function")
			}
			param += ".function"
			if t, e = parseObjectAt(t["function"], param); e != nil {
				return nil, 0, e
			}
		}
		ft, e := parseFunction(t, param)
		if e != nil {
			return nil, 0, e
		}
		tools = append(tools, ft)
	}
	return tools, len(items), nil
}

// parseFunction validates a function's name and parameters; param names the object holding
// them.
func parseFunction(t fields, param string) (functionTool, *apiError) {
	var ft functionTool
	if !t.present("name") {
		return ft, missing(param + ".name")
	}
	name, e := str(t["name"], param+".name")
	if e != nil {
		return ft, e
	}
	if !functionNamePattern.MatchString(name) {
		return ft, invalidRequest(fmt.Sprintf("Invalid '%s.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.", param),
			param+".name", "invalid_value")
	}
	ft.name = name
	if t.present("parameters") {
		if ft.params, e = parseObjectAt(t["parameters"], param+".parameters"); e != nil {
			return ft, e
		}
	}
	return ft, nil
}

// parseObjectAt parses raw as a JSON object, or reports that param is not one.
func parseObjectAt(raw json.RawMessage, param string) (fields, *apiError) {
	var f fields
	if json.Unmarshal(raw, &f) != nil || f == nil {
		return nil, invalidType(param, "an object", raw)
	}
	return f, nil
}

// toolChoiceError is the API's answer to a tool_choice without tools.
func toolChoiceError() *apiError {
	return invalidRequest("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", "tool_choice", "")
}

// parseToolChoice validates tool_choice and returns the function the answer must call, or
// nil for a text answer.
func parseToolChoice(raw json.RawMessage, tools []functionTool, anyTools bool, shape toolShape) (*functionTool, *apiError) {
	if isNull(raw) {
		return nil, nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "none", "auto":
			return nil, nil
		case "required":
			if !anyTools {
				return nil, toolChoiceError()
			}
			if len(tools) == 0 {
				return nil, nil // only tools the server cannot call: answer with text
			}
			return &tools[0], nil
		}
		return nil, invalidValue(mode, "tool_choice", []string{"none", "auto", "required"})
	}
	choice, e := parseObjectAt(raw, "tool_choice")
	if e != nil {
		return nil, invalidType("tool_choice", "one of a string or an object", raw)
	}
	if !choice.present("type") {
		return nil, missing("tool_choice.type")
	}
	typ, e := str(choice["type"], "tool_choice.type")
	if e != nil || typ != "function" {
		return nil, e // allowed_tools, hosted tools: answer with text
	}
	param := "tool_choice"
	if shape == chatTools {
		param += ".function"
		if !choice.present("function") {
			return nil, missing(param)
		}
		if choice, e = parseObjectAt(choice["function"], param); e != nil {
			return nil, e
		}
	}
	if !choice.present("name") {
		return nil, missing(param + ".name")
	}
	name, e := str(choice["name"], param+".name")
	if e != nil {
		return nil, e
	}
	if !anyTools {
		return nil, toolChoiceError()
	}
	i := slices.IndexFunc(tools, func(t functionTool) bool { return t.name == name })
	if i < 0 {
		return nil, invalidRequest(fmt.Sprintf("Tool choice '%s' not found in 'tools' parameter.", name), "tool_choice", "")
	}
	return &tools[i], nil
}

// requestTools parses a request's tools and tool_choice, and returns the function the
// answer must call (nil: text).
func requestTools(f fields, shape toolShape) (*functionTool, *apiError) {
	tools, n, e := parseTools(f["tools"], shape)
	if e != nil {
		return nil, e
	}
	return parseToolChoice(f["tool_choice"], tools, n > 0, shape)
}

// A toolCall is the call the server answers with: the function's name and its arguments
// split into the pieces a stream sends, one per delta.
type toolCall struct {
	name   string
	pieces []string
}

// arguments returns the whole arguments string.
func (c toolCall) arguments() string { return strings.Join(c.pieces, "") }

// callFor returns the server's call of t: a JSON object holding, for every property at the
// top level of t's parameters schema (in name order), a value of that property's schema
// (see schemaValue), cut between JSON tokens into at most `deltas` pieces (at least one).
func callFor(t *functionTool, deltas int) toolCall {
	tokens := []string{"{"}
	if props, ok := t.params["properties"]; ok {
		var m map[string]json.RawMessage
		_ = json.Unmarshal(props, &m) // not an object: no properties
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				tokens = append(tokens, ",")
			}
			tokens = append(tokens, string(mustJSON(k)), ":", schemaValue(m[k]))
		}
	}
	tokens = append(tokens, "}")
	k := min(max(deltas, 1), len(tokens))
	pieces := make([]string, k)
	for j := range k {
		pieces[j] = strings.Join(tokens[j*len(tokens)/k:(j+1)*len(tokens)/k], "")
	}
	return toolCall{name: t.name, pieces: pieces}
}

// schemaValue returns a JSON value for a property schema: its "const", else the first of
// its "enum", else by its "type" (the first that is not "null" in a list): "llmtest" for a
// string, 1 for an integer or a number, true for a boolean, [] for an array, {} for an
// object; null for anything else.
func schemaValue(raw json.RawMessage) string {
	var s fields
	if json.Unmarshal(raw, &s) != nil || s == nil {
		return "null"
	}
	if c, ok := s["const"]; ok {
		return compactJSON(c)
	}
	var enum []json.RawMessage
	if json.Unmarshal(s["enum"], &enum) == nil && len(enum) > 0 {
		return compactJSON(enum[0])
	}
	var types []string
	var one string
	if json.Unmarshal(s["type"], &one) == nil {
		types = []string{one}
	} else {
		_ = json.Unmarshal(s["type"], &types)
	}
	for _, t := range types {
		switch t {
		case "string":
			return `"llmtest"`
		case "integer", "number":
			return "1"
		case "boolean":
			return "true"
		case "array":
			return "[]"
		case "object":
			return "{}"
		}
	}
	return "null"
}

// compactJSON returns raw (valid JSON, as every part of a parsed body is) without
// insignificant whitespace.
func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return "null"
	}
	return b.String()
}
