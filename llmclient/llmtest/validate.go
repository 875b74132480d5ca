package llmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The request validation follows the OpenAI API: it rejects what the API rejects with the
// same status, type, param and code, and messages close to the API's own.

// invalidJSONMessage is the API's answer to a body that is not a JSON object.
const invalidJSONMessage = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"

// fields is a request's top-level JSON object. Keys match exactly (encoding/json would
// match struct fields case-insensitively, which the API does not).
type fields map[string]json.RawMessage

// parseObject parses body as a JSON object.
func parseObject(body []byte) (fields, *apiError) {
	var f fields
	if err := json.Unmarshal(body, &f); err != nil || f == nil {
		return nil, invalidRequest(invalidJSONMessage, "", "")
	}
	return f, nil
}

// parseFields parses a request body as a JSON object, and rejects stream_options if the
// server is strict about it ([WithRejectStreamOptions]).
func (s *Server) parseFields(body []byte) (fields, *apiError) {
	f, e := parseObject(body)
	if e != nil {
		return nil, e
	}
	if _, ok := f["stream_options"]; ok && s.cfg.rejectStreamOptions {
		return nil, invalidRequest("Unknown parameter: 'stream_options'.", "stream_options", "unknown_parameter")
	}
	return f, nil
}

// jsonType names the JSON type of raw as the API's messages do.
func jsonType(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if bytes.ContainsAny(raw, ".eE") {
		return "a decimal"
	}
	return "an integer"
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

func invalidType(param, want string, raw json.RawMessage) *apiError {
	return invalidRequest(fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", param, want, jsonType(raw)),
		param, "invalid_type")
}

func missing(param string) *apiError {
	return invalidRequest(fmt.Sprintf("Missing required parameter: '%s'.", param), param, "missing_required_parameter")
}

// present reports whether key is set to something other than null.
func (f fields) present(key string) bool { return !isNull(f[key]) }

// str returns the string at key ("" if absent or null).
func str(raw json.RawMessage, param string) (string, *apiError) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalidType(param, "a string", raw)
	}
	return s, nil
}

// boolean returns the boolean at key (false if absent or null).
func boolean(raw json.RawMessage, param string) (bool, *apiError) {
	if isNull(raw) {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, invalidType(param, "a boolean", raw)
	}
	return b, nil
}

// integer returns the integer at key (0 if absent or null), checked against [lo, hi].
func integer(raw json.RawMessage, param string, lo, hi int64) (int64, *apiError) {
	if isNull(raw) {
		return 0, nil
	}
	var n int64
	if jsonType(raw) != "an integer" || json.Unmarshal(raw, &n) != nil {
		return 0, invalidType(param, "an integer", raw)
	}
	if n < lo {
		return 0, invalidRequest(fmt.Sprintf("Invalid '%s': integer below minimum value. Expected a value >= %d, but got %d instead.", param, lo, n),
			param, "integer_below_min_value")
	}
	if n > hi {
		return 0, invalidRequest(fmt.Sprintf("Invalid '%s': integer above maximum value. Expected a value <= %d, but got %d instead.", param, hi, n),
			param, "integer_above_max_value")
	}
	return n, nil
}

// model returns the request's model, which every POST endpoint requires.
func (s *Server) model(f fields) (string, *apiError) {
	m, err := str(f["model"], "model")
	if err != nil {
		return "", err
	}
	if m == "" {
		return "", invalidRequest("you must provide a model parameter", "model", "")
	}
	if s.cfg.checkModels && !slices.Contains(s.cfg.models, m) {
		return "", newAPIError(http.StatusNotFound, "invalid_request_error",
			fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", m), "", "model_not_found")
	}
	return m, nil
}

// checkRole checks that the message msg (the request's param) has a role among roles.
func checkRole(msg fields, param string, roles []string) *apiError {
	if !msg.present("role") {
		return missing(param + ".role")
	}
	role, e := str(msg["role"], param+".role")
	if e != nil {
		return e
	}
	if !slices.Contains(roles, role) {
		return invalidValue(role, param+".role", roles)
	}
	return nil
}

// invalidValue is the API's answer to a value outside the supported ones, such as
// "Invalid value: 'robot'. Supported values are: 'system', 'assistant', and 'user'.".
func invalidValue(value, param string, supported []string) *apiError {
	quoted := make([]string, len(supported))
	for i, v := range supported {
		quoted[i] = "'" + v + "'"
	}
	list := strings.Join(quoted, " and ")
	if n := len(quoted); n > 2 {
		list = strings.Join(quoted[:n-1], ", ") + ", and " + quoted[n-1]
	}
	return invalidRequest(fmt.Sprintf("Invalid value: '%s'. Supported values are: %s.", value, list), param, "invalid_value")
}

// streamFlags returns the stream and stream_options.include_usage settings.
func streamFlags(f fields) (stream, includeUsage bool, e *apiError) {
	if stream, e = boolean(f["stream"], "stream"); e != nil {
		return false, false, e
	}
	if !f.present("stream_options") {
		return stream, false, nil
	}
	if !stream {
		return false, false, invalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options", "")
	}
	var opts fields
	if json.Unmarshal(f["stream_options"], &opts) != nil || opts == nil {
		return false, false, invalidType("stream_options", "an object", f["stream_options"])
	}
	includeUsage, e = boolean(opts["include_usage"], "stream_options.include_usage")
	return stream, includeUsage, e
}

// maxTokens returns the completion token limit: max_completion_tokens, else max_tokens (0:
// none).
func maxTokens(f fields) (int, *apiError) {
	n, e := integer(f["max_tokens"], "max_tokens", 1, 1<<31-1)
	if e != nil {
		return 0, e
	}
	m, e := integer(f["max_completion_tokens"], "max_completion_tokens", 1, 1<<31-1)
	if e != nil {
		return 0, e
	}
	if m > 0 {
		return int(m), nil
	}
	return int(n), nil
}

// textInput is one prompt or embedding input: a string, or an array of token ids.
type textInput struct {
	text     string
	tokens   []int64
	isTokens bool
}

// tokenCount returns the input's prompt tokens.
func (t textInput) tokenCount() int {
	if t.isTokens {
		return len(t.tokens)
	}
	return CountTokens(t.text)
}

// textInputs parses a prompt or an embedding input: a string, an array of strings, an array
// of token ids, or an array of arrays of token ids.
func textInputs(raw json.RawMessage, param string, maxItems int) ([]textInput, *apiError) {
	const want = "one of a string, an array of strings, an array of integers, or an array of arrays of integers"
	if isNull(raw) {
		return nil, missing(param)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []textInput{{text: s}}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, invalidType(param, want, raw)
	}
	if len(items) == 0 {
		return nil, invalidRequest(fmt.Sprintf("Invalid '%s': empty array. Expected an array with minimum length 1, but got an empty array instead.", param),
			param, "empty_array")
	}
	if len(items) > maxItems {
		return nil, invalidRequest(fmt.Sprintf("Invalid '%s': array too long. Expected an array with maximum length %d, but got an array with length %d instead.", param, maxItems, len(items)),
			param, "array_above_max_length")
	}
	var tokens []int64
	if json.Unmarshal(raw, &tokens) == nil && jsonType(items[0]) == "an integer" {
		return []textInput{{tokens: tokens, isTokens: true}}, nil
	}
	out := make([]textInput, 0, len(items))
	for i, it := range items {
		var t textInput
		if json.Unmarshal(it, &t.text) != nil {
			if jsonType(it) != "an array" || json.Unmarshal(it, &t.tokens) != nil {
				return nil, invalidType(fmt.Sprintf("%s[%d]", param, i), "a string or an array of integers", it)
			}
			t.isTokens = true
		}
		out = append(out, t)
	}
	return out, nil
}
