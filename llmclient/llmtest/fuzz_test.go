package llmtest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// FuzzRequest feeds arbitrary bodies to the request parser and validator of each POST
// endpoint (messages, Responses input items, tools and tool_choice included) and checks that
// every answer is well-formed: a 400 or 413 with an OpenAI-shaped error object, or a 200
// whose JSON or stream parses, and whose tool-call arguments are JSON.
func FuzzRequest(f *testing.F) {
	for _, seed := range []struct {
		path uint8
		body string
	}{
		{0, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{0, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":2,"messages":[{"role":"system","content":[{"type":"text","text":"a b"}]}]}`},
		{0, `{"model":"m","messages":[{"role":"robot"}]}`},
		{0, `{"model":4}`},
		{0, `{"model":"m","messages":[]`},
		{1, `{"model":"m","input":["a","b"],"dimensions":3,"encoding_format":"base64"}`},
		{1, `{"model":"m","input":[[1,2],[3]]}`},
		{1, `{"model":"m","input":[1,"a"]}`},
		{2, `{"model":"m","prompt":"x","stream":true}`},
		{2, `{"model":"m","prompt":[[1],[2,3]],"max_tokens":1e3}`},
		{2, `null`},
		{2, `"just a string"`},
		{3, `{"model":"m","input":"hi","instructions":"be brief","max_output_tokens":16,"stream":true}`},
		{3, `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a b"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"ok"}]}`},
		{3, `{"model":"m","input":"x","stream":true,"tools":[{"type":"function","name":"f","parameters":{"properties":{"a":{"enum":["x"]},"b":{"type":["null","number"]},"c":{"const":{"k":[1]}}}}}],"tool_choice":{"type":"function","name":"f"}}`},
		{3, `{"model":"m","input":[{"role":"robot","content":"x"}]}`},
		{0, `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"properties":{"q":{"type":"string"}}}}}],"tool_choice":"required"}`},
		{0, `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`},
	} {
		f.Add(seed.path, []byte(seed.body))
	}
	paths := []string{llmtest.PathChatCompletions, llmtest.PathEmbeddings, llmtest.PathCompletions, llmtest.PathResponses}
	f.Fuzz(func(t *testing.T, path uint8, body []byte) {
		srv := llmtest.NewUnstartedServer(llmtest.WithMaxBodyBytes(64<<10), llmtest.WithChunks(2, "a "))
		defer srv.Close()
		p := paths[int(path)%len(paths)]
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, p, bytes.NewReader(body)))
		out := rec.Body.Bytes()
		switch rec.Code {
		case http.StatusOK:
			switch {
			case rec.Header().Get("Content-Type") == "application/json":
				checkJSON(t, out)
			case p == llmtest.PathResponses:
				checkResponsesStream(t, string(out))
			default:
				s := string(out)
				if !strings.HasSuffix(s, "data: [DONE]\n\n") {
					t.Fatalf("stream without [DONE]: %q", s)
				}
				checkChatStream(t, sseData(s))
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e struct {
				Error *struct {
					Message *string `json:"message"`
					Type    *string `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			dec := json.NewDecoder(bytes.NewReader(out))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil || e.Error == nil || e.Error.Message == nil || *e.Error.Message == "" ||
				e.Error.Type == nil || *e.Error.Type != "invalid_request_error" {
				t.Fatalf("status %d with error body %q (%v)", rec.Code, out, err)
			}
		default:
			t.Fatalf("status %d for %s %q", rec.Code, p, body)
		}
	})
}

// checkChatStream fails unless the data events of a chat or text completion stream are JSON,
// and the tool-call arguments their deltas carry add up to JSON.
func checkChatStream(t *testing.T, data []string) {
	t.Helper()
	var args strings.Builder
	for _, d := range data[:len(data)-1] {
		var c struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Function struct{ Arguments string }
					} `json:"tool_calls"`
				}
			}
		}
		if err := json.Unmarshal([]byte(d), &c); err != nil {
			t.Fatalf("stream event %q is not JSON: %v", d, err)
		}
		for _, ch := range c.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				args.WriteString(tc.Function.Arguments)
			}
		}
	}
	if a := args.String(); a != "" && !json.Valid([]byte(a)) {
		t.Fatalf("streamed arguments %q are not JSON", a)
	}
}

// checkJSON fails unless b is JSON whose "arguments" strings (tool-call arguments) are JSON
// too.
func checkJSON(t *testing.T, b []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("invalid JSON %q: %v", b, err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && k == "arguments" && s != "" && !json.Valid([]byte(s)) {
					t.Fatalf("arguments %q are not JSON in %s", s, b)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
}

// checkResponsesStream fails unless s is a whole Responses stream: named events whose data
// carries the same type and numbers them from 0, ending in response.completed or
// response.incomplete.
func checkResponsesStream(t *testing.T, s string) {
	t.Helper()
	evs := sseEvents(s)
	for i, ev := range evs {
		checkJSON(t, []byte(ev.data))
		var head struct {
			Type string `json:"type"`
			Seq  int    `json:"sequence_number"`
		}
		if json.Unmarshal([]byte(ev.data), &head) != nil || head.Type != ev.name || head.Seq != i {
			t.Fatalf("event %d %q: type %q, sequence_number %d", i, ev.name, head.Type, head.Seq)
		}
	}
	if n := len(evs); n == 0 || evs[n-1].name != "response.completed" && evs[n-1].name != "response.incomplete" {
		t.Fatalf("stream without its terminal event: %q", s)
	}
}
