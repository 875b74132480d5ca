package llmwire

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Request is what a request body asks for that decides how the call is run.
type Request struct {
	// Model is the "model" field.
	Model string
	// Stream is "stream": true.
	Stream bool
	// StreamOptions reports that the body has a "stream_options" field, of any value.
	StreamOptions bool
	// IncludeUsage is stream_options.include_usage: true.
	IncludeUsage bool
	// MaxTokens is the largest of max_tokens, max_completion_tokens and
	// max_output_tokens given as non-negative integers (the last of a member given
	// twice), or -1 when none is.
	MaxTokens int64
}

// ErrNotObject reports a body that is not one JSON object.
var ErrNotObject = errors.New("llmwire: body is not a JSON object")

// ParseRequest reads the fields of a JSON request body that decide the call's policy.
// A body that is not a JSON object gives ErrNotObject (and a zero Request): such a
// body is sent as it is, and the upstream says what is wrong with it.
func ParseRequest(body []byte) (Request, error) {
	r := Request{MaxTokens: -1}
	if !isObject(body) {
		return r, ErrNotObject
	}
	limits := [3]int64{-1, -1, -1} // the last value of each max-tokens member
	gjson.ParseBytes(body).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			r.Model = strings.Clone(v.String()) // not a view of the whole body
		case "stream":
			r.Stream = v.Type == gjson.True
		case "stream_options":
			r.StreamOptions = true
			r.IncludeUsage = v.Get("include_usage").Type == gjson.True
		case "max_tokens":
			limits[0] = count(v)
		case "max_completion_tokens":
			limits[1] = count(v)
		case "max_output_tokens":
			limits[2] = count(v)
		}
		return true
	})
	r.MaxTokens = max(limits[0], limits[1], limits[2])
	return r, nil
}

// count is a JSON number that is a non-negative integer (clamped to the int64 range),
// or -1.
func count(v gjson.Result) int64 {
	if v.Type != gjson.Number {
		return -1
	}
	n, err := strconv.ParseUint(v.Raw, 10, 64)
	switch {
	case err == nil && n <= math.MaxInt64:
		return int64(n)
	case errors.Is(err, strconv.ErrRange) || (err == nil && n > math.MaxInt64):
		return math.MaxInt64
	}
	return -1
}

// isObject reports whether body is one valid JSON object.
func isObject(body []byte) bool {
	if !gjson.ValidBytes(body) {
		return false
	}
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c == '{'
	}
	return false
}

// WithIncludeUsage returns body with stream_options.include_usage set to true, keeping
// every other field as it was.
func WithIncludeUsage(body []byte) ([]byte, error) {
	if !isObject(body) {
		return nil, ErrNotObject
	}
	if opts := gjson.GetBytes(body, "stream_options"); opts.Exists() && !opts.IsObject() {
		// A null or malformed stream_options is replaced rather than edited.
		var err error
		if body, err = sjson.DeleteBytes(body, "stream_options"); err != nil {
			return nil, err
		}
	}
	return sjson.SetBytes(body, "stream_options.include_usage", true)
}

// WithoutStreamOptions returns body without its stream_options field.
func WithoutStreamOptions(body []byte) ([]byte, error) {
	if !isObject(body) {
		return nil, ErrNotObject
	}
	return sjson.DeleteBytes(body, "stream_options")
}

// WithModel returns body with its "model" field set to model, every other field kept.
func WithModel(body []byte, model string) ([]byte, error) {
	if !isObject(body) {
		return nil, ErrNotObject
	}
	return sjson.SetBytes(body, "model", model)
}

// Prompt returns the raw JSON of what a request asks the model: "messages" for chat,
// "input" (with "instructions" before it, as a system message) for the Responses API,
// "prompt" for legacy completions, "input" for embeddings. It is recorded only when the
// user opted in to content capture.
func Prompt(op Op, body []byte) string {
	switch op {
	case OpChat:
		return gjson.GetBytes(body, "messages").Raw
	case OpCompletions:
		return gjson.GetBytes(body, "prompt").Raw
	case OpEmbeddings:
		return gjson.GetBytes(body, "input").Raw
	case OpResponses:
		r := gjson.GetManyBytes(body, "instructions", "input")
		if r[0].Exists() && r[0].Type == gjson.String {
			b, _ := sjson.SetRaw(`[]`, "-1", `{"role":"system","content":`+r[0].Raw+`}`)
			if r[1].IsArray() {
				r[1].ForEach(func(_, item gjson.Result) bool {
					b, _ = sjson.SetRaw(b, "-1", item.Raw)
					return true
				})
			} else if r[1].Exists() {
				b, _ = sjson.SetRaw(b, "-1", `{"role":"user","content":`+r[1].Raw+`}`)
			}
			return b
		}
		return r[1].Raw
	}
	return ""
}
