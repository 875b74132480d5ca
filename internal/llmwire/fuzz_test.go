package llmwire_test

import (
	"encoding/json"
	"testing"

	"github.com/infermesh/infermesh/internal/llmwire"
)

// refUsage reads a document's usage with encoding/json, the reference.
func refUsage(data []byte, path ...string) (in, out int64, ok bool) {
	var doc map[string]json.RawMessage
	if json.Unmarshal(data, &doc) != nil {
		return 0, 0, false
	}
	raw := doc["usage"]
	for _, p := range path {
		var inner map[string]json.RawMessage
		if json.Unmarshal(doc[p], &inner) != nil {
			return 0, 0, false
		}
		raw = inner["usage"]
	}
	var u map[string]json.RawMessage
	if json.Unmarshal(raw, &u) != nil || u == nil {
		return 0, 0, false
	}
	num := func(keys ...string) int64 {
		v := int64(-1)
		for _, k := range keys {
			var f float64
			if json.Unmarshal(u[k], &f) == nil && u[k] != nil {
				v = int64(f)
			}
		}
		return v
	}
	return num("prompt_tokens", "input_tokens"), num("completion_tokens", "output_tokens"), true
}

// FuzzParseEvent: no panic on any data; JSON that encoding/json rejects is rejected;
// the usage read agrees with encoding/json's.
func FuzzParseEvent(f *testing.F) {
	f.Add(`{"choices":[{"delta":{"content":"x"}}]}`)
	f.Add(`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`)
	f.Add(`{"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":2}}}`)
	f.Add(`{"error":{"message":"x","code":1}}`)
	f.Add(`{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\u00e9"}}]}}]}`)
	f.Add(`{"usage":{"prompt_tokens":-1,"completion_tokens":2}}`)
	f.Fuzz(func(t *testing.T, data string) {
		for _, kind := range []llmwire.StreamKind{llmwire.KindChat, llmwire.KindResponses} {
			ev, err := llmwire.ParseEvent(kind, nil, []byte(data))
			valid := json.Valid([]byte(data))
			if err != nil {
				if valid {
					t.Fatalf("valid JSON rejected: %v", err)
				}
				continue
			}
			if !valid && len(data) > 0 && (data[0] == '{' || data[0] == '[') {
				t.Fatalf("invalid JSON accepted: %q", data)
			}
			path := []string(nil)
			if kind == llmwire.KindResponses {
				if !ev.Terminal {
					continue
				}
				path = []string{"response"}
			}
			in, out, ok := refUsage([]byte(data), path...)
			if !ok || !ev.Usage.Has {
				continue
			}
			if ev.Usage.InputTokens != in || ev.Usage.OutputTokens != out {
				t.Fatalf("usage %d/%d, encoding/json says %d/%d: %s", ev.Usage.InputTokens, ev.Usage.OutputTokens, in, out, data)
			}
		}
	})
}

// FuzzParseRequest: no panic; the model and stream flag agree with encoding/json.
func FuzzParseRequest(f *testing.F) {
	f.Add(`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}`)
	f.Add(`{"model":"m\u00e9","stream":false}`)
	f.Add(`{"stream_options":null}`)
	f.Fuzz(func(t *testing.T, body string) {
		r, err := llmwire.ParseRequest([]byte(body))
		// Keys are matched exactly, as the API's servers do (encoding/json's struct
		// decoding would also take "Stream").
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(body), &obj) != nil || obj == nil {
			if err == nil {
				t.Fatalf("not an object, accepted: %q", body)
			}
			return
		}
		if err != nil {
			t.Fatalf("object rejected: %v", err)
		}
		var model string
		if json.Unmarshal(obj["model"], &model) == nil && model != r.Model {
			t.Fatalf("model %q, encoding/json says %q", r.Model, model)
		}
		var stream bool
		_ = json.Unmarshal(obj["stream"], &stream)
		if stream != r.Stream {
			t.Fatalf("stream %v, encoding/json says %v", r.Stream, stream)
		}
		if b, err := llmwire.WithIncludeUsage([]byte(body)); err == nil && !json.Valid(b) {
			t.Fatalf("WithIncludeUsage made invalid JSON: %s", b)
		}
	})
}

// FuzzParseBody: no panic; the error object and usage agree with encoding/json.
func FuzzParseBody(f *testing.F) {
	f.Add(`{"choices":[{"message":{"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}`)
	f.Add(`{"error":{"message":"bad","code":42}}`)
	f.Add(`{"object":"response","status":"failed","error":null,"usage":{"input_tokens":1}}`)
	f.Add(`{"error":null,"error":{"message":"x"}}`) // the last member wins, as in encoding/json
	f.Add(`{"usage":{"total_tokens":1},"usage":{"total_tokens":2}}`)
	f.Fuzz(func(t *testing.T, body string) {
		b, err := llmwire.ParseBody([]byte(body), true)
		lean, leanErr := llmwire.ParseBody([]byte(body), false)
		if (err == nil) != (leanErr == nil) || (b.Error == nil) != (lean.Error == nil) || b.Usage != lean.Usage {
			t.Fatalf("detail changed the verdict: %+v %v against %+v %v", b, err, lean, leanErr)
		}
		if err != nil {
			if json.Valid([]byte(body)) {
				t.Fatalf("valid JSON rejected: %v", err)
			}
			return
		}
		var ref struct {
			Object string          `json:"object"`
			Error  json.RawMessage `json:"error"`
		}
		if json.Unmarshal([]byte(body), &ref) != nil {
			return
		}
		isObj := len(ref.Error) > 0 && ref.Error[0] == '{'
		if isObj != (b.Error != nil) && ref.Object != "response" {
			t.Fatalf("error object %v, encoding/json says %s", b.Error, ref.Error)
		}
		if in, out, ok := refUsage([]byte(body)); ok && b.Usage.Has && (b.Usage.InputTokens != in || b.Usage.OutputTokens != out) {
			t.Fatalf("usage %+v, encoding/json says %d/%d", b.Usage, in, out)
		}
	})
}
