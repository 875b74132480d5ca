package llmwire_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/infermesh/infermesh/internal/llmwire"
)

func TestOpOf(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]llmwire.Op{
		"/v1/chat/completions":                      llmwire.OpChat,
		"/openai/deployments/gpt4/chat/completions": llmwire.OpChat,
		"/v1/completions":                           llmwire.OpCompletions,
		"/v1/embeddings/":                           llmwire.OpEmbeddings,
		"/v1/responses":                             llmwire.OpResponses,
		"/v1/batches":                               llmwire.OpOther,
		"/v1/models":                                llmwire.OpOther,
	} {
		if got := llmwire.OpOf(path); got != want {
			t.Errorf("OpOf(%q) = %v, want %v", path, got, want)
		}
	}
	for path, want := range map[string]string{
		"/v1/chat/completions": "/chat/completions", "/openai/deployments/d/embeddings": "/embeddings",
		"/v1/batches": "/batches", "/custom": "/custom",
	} {
		if got := llmwire.OperationPath(path); got != want {
			t.Errorf("OperationPath(%q) = %q, want %q", path, got, want)
		}
	}
	if llmwire.OpOf("/v1/batches").Replayable() || !llmwire.OpResponses.Replayable() || !llmwire.OpResponses.Streams() || llmwire.OpEmbeddings.Streams() {
		t.Error("Replayable/Streams")
	}
	if n := llmwire.OpOther.Name("/v1/audio/speech"); n != "audio.speech" {
		t.Errorf("name %q", n)
	}
}

func TestParseRequest(t *testing.T) {
	t.Parallel()
	r, err := llmwire.ParseRequest([]byte(`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":50,"messages":[]}`))
	if err != nil || r != (llmwire.Request{Model: "gpt-4o", Stream: true, StreamOptions: true, IncludeUsage: true, MaxTokens: 50}) {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = llmwire.ParseRequest([]byte(` {"model":"m","stream_options":null}`))
	if err != nil || r != (llmwire.Request{Model: "m", StreamOptions: true, MaxTokens: -1}) {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{``, `[1]`, `{"model":`, `"x"`} {
		if _, err := llmwire.ParseRequest([]byte(bad)); err == nil {
			t.Errorf("ParseRequest(%q) accepted", bad)
		}
	}
}

func TestEdits(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"model":"m","stream":true}`:                                  `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","stream_options":{}}`:                            `{"model":"m","stream_options":{"include_usage":true}}`,
		`{"model":"m","stream_options":null,"n":1}`:                    `{"model":"m","n":1,"stream_options":{"include_usage":true}}`,
		`{"stream_options":{"include_usage":false,"x":1},"model":"m"}`: `{"stream_options":{"include_usage":true,"x":1},"model":"m"}`,
	} {
		got, err := llmwire.WithIncludeUsage([]byte(in))
		if err != nil || !sameJSON(got, []byte(want)) {
			t.Errorf("WithIncludeUsage(%s) = %s %v, want %s", in, got, err, want)
		}
	}
	got, _ := llmwire.WithoutStreamOptions([]byte(`{"a":1,"stream_options":{"include_usage":true},"b":2}`))
	if string(got) != `{"a":1,"b":2}` {
		t.Errorf("WithoutStreamOptions = %s", got)
	}
	got, _ = llmwire.WithModel([]byte(`{"messages":[],"model":"a","n":1}`), "b")
	if string(got) != `{"messages":[],"model":"b","n":1}` {
		t.Errorf("WithModel = %s: order and bytes must be kept", got)
	}
	if _, err := llmwire.WithModel([]byte(`[]`), "b"); err == nil {
		t.Error("WithModel on a non-object")
	}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

func TestParseEventChat(t *testing.T) {
	t.Parallel()
	type want struct {
		output, terminal, choices, usageOnly, err bool
		text                                      string
	}
	for name, tc := range map[string]struct {
		data string
		want want
	}{
		"role only":  {`{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`, want{choices: true}},
		"content":    {`{"choices":[{"index":0,"delta":{"content":"Hi \"x\""}}]}`, want{output: true, choices: true, text: `Hi "x"`}},
		"refusal":    {`{"choices":[{"delta":{"refusal":"no"}}]}`, want{output: true, choices: true}},
		"reasoning":  {`{"choices":[{"delta":{"reasoning_content":"think"}}]}`, want{output: true, choices: true}},
		"tool call":  {`{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}`, want{output: true, choices: true}},
		"legacy":     {`{"choices":[{"text":"abc","index":0,"finish_reason":null}]}`, want{output: true, choices: true, text: "abc"}},
		"finish":     {`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`, want{terminal: true, choices: true}},
		"usage only": {`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, want{usageOnly: true}},
		"error":      {`{"error":{"message":"Overloaded","type":"overloaded_error"}}`, want{err: true}},
		"not json":   {`ping`, want{}},
		"filter":     {`{"choices":[],"prompt_filter_results":[]}`, want{}},
	} {
		ev, err := llmwire.ParseEvent(llmwire.KindChat, nil, []byte(tc.data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := want{ev.Output, ev.Terminal, ev.Choices, ev.UsageOnly, ev.Error != nil, ev.Text}
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", name, got, tc.want)
		}
	}
	ev, _ := llmwire.ParseEvent(llmwire.KindChat, nil, []byte("[DONE]"))
	if !ev.Done || !ev.Terminal {
		t.Error("[DONE]")
	}
	if _, err := llmwire.ParseEvent(llmwire.KindChat, nil, []byte(`{"choices":[{"delta":{"content":"a`)); err == nil {
		t.Error("malformed chunk accepted")
	}
	ev, _ = llmwire.ParseEvent(llmwire.KindChat, nil, []byte(`{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"a\":"}}]}}]}`))
	if len(ev.ToolCalls) != 1 || ev.ToolCalls[0].Index != 1 || ev.ToolCalls[0].Arguments != `{"a":` {
		t.Errorf("tool call delta %+v", ev.ToolCalls)
	}
	ev, _ = llmwire.ParseEvent(llmwire.KindChat, nil, []byte(`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"completion_tokens_details":{"reasoning_tokens":2}}}`))
	if ev.Usage != (llmwire.Usage{Has: true, InputTokens: 3, OutputTokens: 4, Total: 7, ReasoningTokens: 2}) {
		t.Errorf("usage %+v", ev.Usage)
	}
}

func TestParseEventResponses(t *testing.T) {
	t.Parallel()
	type want struct {
		output, terminal, err bool
		text                  string
	}
	for name, tc := range map[string]struct {
		data string
		want want
	}{
		"created":     {`{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","model":"m","status":"in_progress","output":[]}}`, want{}},
		"in progress": {`{"type":"response.in_progress","sequence_number":1,"response":{}}`, want{}},
		"queued":      {`{"type":"response.queued","sequence_number":1,"response":{}}`, want{}},
		"item added":  {`{"type":"response.output_item.added","output_index":0,"item":{"type":"message","content":[]}}`, want{}},
		"part added":  {`{"type":"response.content_part.added","part":{"type":"output_text","text":""}}`, want{}},
		"text delta":  {`{"type":"response.output_text.delta","delta":"Hel"}`, want{output: true, text: "Hel"}},
		"args delta":  {`{"type":"response.function_call_arguments.delta","delta":"{"}`, want{output: true}},
		"reasoning":   {`{"type":"response.reasoning_summary_text.delta","delta":"x"}`, want{output: true}},
		"text done":   {`{"type":"response.output_text.done","text":"Hello"}`, want{output: true}},
		"completed":   {`{"type":"response.completed","response":{"id":"resp_1","status":"completed","usage":{"input_tokens":5,"output_tokens":2,"total_tokens":7,"output_tokens_details":{"reasoning_tokens":1}}}}`, want{terminal: true}},
		"incomplete":  {`{"type":"response.incomplete","response":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"}}}`, want{terminal: true}},
		"failed":      {`{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"boom"}}}`, want{terminal: true, err: true}},
		"error":       {`{"type":"error","code":"rate_limit_exceeded","message":"slow down","param":null,"sequence_number":3}`, want{err: true}},
	} {
		ev, err := llmwire.ParseEvent(llmwire.KindResponses, nil, []byte(tc.data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := want{ev.Output, ev.Terminal, ev.Error != nil, ev.Text}
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", name, got, tc.want)
		}
	}
	ev, _ := llmwire.ParseEvent(llmwire.KindResponses, nil, []byte(`{"type":"response.completed","response":{"id":"resp_1","model":"gpt-4o","status":"completed","usage":{"input_tokens":5,"output_tokens":2,"total_tokens":7,"output_tokens_details":{"reasoning_tokens":1}}}}`))
	if ev.ID != "resp_1" || ev.Model != "gpt-4o" || ev.Usage != (llmwire.Usage{Has: true, InputTokens: 5, OutputTokens: 2, Total: 7, ReasoningTokens: 1}) ||
		len(ev.FinishReasons) != 1 || ev.FinishReasons[0] != "completed" || ev.Response == "" {
		t.Errorf("completed %+v", ev)
	}
	ev, _ = llmwire.ParseEvent(llmwire.KindResponses, nil, []byte(`{"type":"error","code":"rate_limit_exceeded","message":"slow down"}`))
	if *ev.Error != (llmwire.ErrorObject{Code: "rate_limit_exceeded", Message: "slow down"}) {
		t.Errorf("error %+v", ev.Error)
	}
	// An event with no type in its JSON takes the SSE event name.
	ev, _ = llmwire.ParseEvent(llmwire.KindResponses, []byte("response.output_text.delta"), []byte(`{"delta":"x"}`))
	if !ev.Output {
		t.Error("event name not used")
	}
}

func TestParseBody(t *testing.T) {
	t.Parallel()
	b, err := llmwire.ParseBody([]byte(`{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"},{"index":1,"message":{"content":"Yo"},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`), true)
	if err != nil || b.ID != "chatcmpl-1" || b.Text != "Hi" || len(b.FinishReasons) != 2 || b.Usage.Total != 3 || b.Error != nil {
		t.Fatalf("chat %+v %v", b, err)
	}
	b, _ = llmwire.ParseBody([]byte(`{"object":"list","data":[],"model":"e","usage":{"prompt_tokens":8,"total_tokens":8}}`), true)
	if b.Usage != (llmwire.Usage{Has: true, InputTokens: 8, OutputTokens: -1, Total: 8}) {
		t.Fatalf("embeddings %+v", b.Usage)
	}
	b, _ = llmwire.ParseBody([]byte(`{"id":"resp_1","object":"response","status":"completed","error":null,"model":"m","output":[{"type":"reasoning"},{"type":"message","content":[{"type":"output_text","text":"He"},{"type":"output_text","text":"llo"}]}],"usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3}}`), true)
	if b.Error != nil || b.Text != "Hello" || b.FinishReasons[0] != "completed" || b.Usage.OutputTokens != 2 {
		t.Fatalf("responses %+v", b)
	}
	b, _ = llmwire.ParseBody([]byte(`{"object":"response","status":"failed","error":{"code":"server_error","message":"x"}}`), true)
	if b.Error == nil || b.Error.Code != "server_error" {
		t.Fatalf("failed response %+v", b)
	}
	b, _ = llmwire.ParseBody([]byte(`{"error":{"message":"m","type":"t","code":42,"param":"p"}}`), true)
	if *b.Error != (llmwire.ErrorObject{Message: "m", Type: "t", Code: "42", Param: "p"}) {
		t.Fatalf("error %+v", b.Error)
	}
	if _, err := llmwire.ParseBody([]byte(`{"choices":[`), true); err == nil {
		t.Fatal("malformed body accepted")
	}
	// Without detail: the error and the usage only.
	b, _ = llmwire.ParseBody([]byte(`{"id":"c","model":"m","choices":[{"message":{"content":"Hi"},"finish_reason":"stop"}],"usage":{"total_tokens":3}}`), false)
	if b.Usage.Total != 3 || b.Text != "" || len(b.FinishReasons) != 0 || b.Error != nil {
		t.Fatalf("chat without detail %+v", b)
	}
	if b, _ = llmwire.ParseBody([]byte(`{"object":"response","status":"failed"}`), false); b.Error == nil {
		t.Fatalf("failed response without detail: no error")
	}
	for body, want := range map[string]string{
		`{"error":"bad thing"}`:                                "bad thing",
		`{"detail":"Not Found"}`:                               "Not Found",
		`{"detail":[{"loc":["body"],"msg":"field required"}]}`: "field required",
		`{"message":"m"}`:                                      "m",
		`{"error":{"message":"x"}}`:                            "",
		`no healthy upstream`:                                  "",
	} {
		if got := llmwire.ErrorText([]byte(body)); got != want {
			t.Errorf("ErrorText(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestAccumulator(t *testing.T) {
	t.Parallel()
	a := llmwire.NewAccumulator(llmwire.OpChat, 1<<20)
	for _, d := range []string{
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Let me check."}}]}`,
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"weather","arguments":""}}]}}]}`,
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}`,
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Oslo\"}"}}]}}]}`,
		`{"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		`{"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`,
	} {
		ev, err := llmwire.ParseEvent(llmwire.KindChat, nil, []byte(d))
		if err != nil {
			t.Fatal(err)
		}
		a.Add(&ev)
	}
	body, ok := a.Body()
	if !ok {
		t.Fatal("no body")
	}
	var c struct {
		Choices []struct {
			Message struct {
				Content   string
				ToolCalls []struct {
					ID, Type string
					Function struct{ Name, Arguments string }
				} `json:"tool_calls"`
			}
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		}
	}
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	m := c.Choices[0].Message
	if m.Content != "Let me check." || len(m.ToolCalls) != 1 || m.ToolCalls[0].ID != "call_1" || m.ToolCalls[0].Function.Arguments != `{"city":"Oslo"}` ||
		c.Choices[0].FinishReason != "tool_calls" || c.Usage.TotalTokens != 7 {
		t.Fatalf("accumulated %s", body)
	}

	small := llmwire.NewAccumulator(llmwire.OpChat, 4)
	ev, _ := llmwire.ParseEvent(llmwire.KindChat, nil, []byte(`{"choices":[{"delta":{"content":"too long"},"finish_reason":"stop"}]}`))
	small.Add(&ev)
	if _, ok := small.Body(); ok {
		t.Fatal("an accumulator past its limit gave a body")
	}
	r := llmwire.NewAccumulator(llmwire.OpResponses, 1<<20)
	ev, _ = llmwire.ParseEvent(llmwire.KindResponses, nil, []byte(`{"type":"response.completed","response":{"id":"resp_1","object":"response","status":"completed"}}`))
	r.Add(&ev)
	if b, ok := r.Body(); !ok || string(b) != `{"id":"resp_1","object":"response","status":"completed"}` {
		t.Fatalf("responses body %s", b)
	}
}
