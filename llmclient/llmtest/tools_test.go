package llmtest_test

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
	openai "github.com/sashabaranov/go-openai"
)

// weatherChat is a chat request offering get_weather (the schema of weatherTool) and a
// second function, with the given tool_choice.
func weatherChat(choice any) openai.ChatCompletionRequest {
	var tool struct {
		Parameters json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal([]byte(weatherTool), &tool); err != nil {
		panic(err)
	}
	req := userChat("What is the weather in Paris?")
	req.Tools = []openai.Tool{
		{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "get_weather", Parameters: tool.Parameters}},
		{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "get_time", Parameters: json.RawMessage(`{"type":"object"}`)}},
	}
	req.ToolChoice = choice
	return req
}

func TestChatToolCallUnary(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(3, "x "))
	for i, tc := range []struct {
		choice     any
		name, args string
	}{
		{"required", "get_weather", weatherArgs},
		{openai.ToolChoice{Type: openai.ToolTypeFunction, Function: openai.ToolFunction{Name: "get_time"}}, "get_time", "{}"},
	} {
		resp, err := newOpenAI(srv).CreateChatCompletion(t.Context(), weatherChat(tc.choice))
		if err != nil {
			t.Fatal(err)
		}
		ch := resp.Choices[0]
		if ch.FinishReason != openai.FinishReasonToolCalls || ch.Message.Content != "" || len(ch.Message.ToolCalls) != 1 {
			t.Fatalf("%d: choice %+v", i, ch)
		}
		call := ch.Message.ToolCalls[0]
		if call.ID != "call_"+string(rune('1'+i)) || call.Type != openai.ToolTypeFunction || call.Function.Name != tc.name || call.Function.Arguments != tc.args {
			t.Errorf("%d: tool call %+v", i, call)
		}
		// One completion token per argument piece: 3 (WithChunks) for get_weather, 2 for "{}".
		if want := min(3, len(tc.args)); resp.Usage.CompletionTokens != want {
			t.Errorf("%d: completion tokens %d, want %d", i, resp.Usage.CompletionTokens, want)
		}
	}

	// The raw message has "content": null, as the API sends it.
	body := `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`
	r := post(t, srv, llmtest.PathChatCompletions, body)
	if !strings.Contains(r.body, `"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_3","type":"function","function":{"name":"f","arguments":"{}"}}],"refusal":null}`) {
		t.Errorf("raw body %s", r.body)
	}

	// openai-go decodes it too.
	c, err := newOpenAIGo(srv).Chat.Completions.New(t.Context(), oai.ChatCompletionNewParams{
		Model:    "m",
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("weather?")},
		Tools: []oai.ChatCompletionToolUnionParam{oai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		})},
		ToolChoice: oai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: oai.String("required")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if tc := c.Choices[0].Message.ToolCalls; c.Choices[0].FinishReason != "tool_calls" || len(tc) != 1 ||
		tc[0].Function.Name != "get_weather" || tc[0].Function.Arguments != `{"city":"llmtest"}` {
		t.Errorf("openai-go: %+v", c.Choices[0])
	}
}

// TestChatToolCallStream decodes a streamed tool call with go-openai's and openai-go's own
// types: the first delta holds index, id, type and name, the next ones the arguments.
func TestChatToolCallStream(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(4, "x "))
	req := weatherChat("required")
	req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	s, err := newOpenAI(srv).CreateChatCompletionStream(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chunks, err := recvAll(s)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("after %d chunks: %v", len(chunks), err)
	}
	// header, 4 argument pieces, finish, usage
	if len(chunks) != 7 {
		t.Fatalf("%d chunks: %+v", len(chunks), chunks)
	}
	first := chunks[0].Choices[0].Delta
	if first.Role != "assistant" || len(first.ToolCalls) != 1 || *first.ToolCalls[0].Index != 0 || first.ToolCalls[0].ID != "call_1" ||
		first.ToolCalls[0].Type != openai.ToolTypeFunction || first.ToolCalls[0].Function.Name != "get_weather" || first.ToolCalls[0].Function.Arguments != "" {
		t.Errorf("first delta %+v", first)
	}
	var args strings.Builder
	for _, c := range chunks[1:5] {
		d := c.Choices[0].Delta
		if len(d.ToolCalls) != 1 || *d.ToolCalls[0].Index != 0 || d.ToolCalls[0].ID != "" || d.ToolCalls[0].Function.Name != "" || d.ToolCalls[0].Function.Arguments == "" {
			t.Errorf("argument delta %+v", d)
		}
		args.WriteString(d.ToolCalls[0].Function.Arguments)
	}
	if args.String() != weatherArgs || chunks[5].Choices[0].FinishReason != openai.FinishReasonToolCalls || chunks[6].Usage.CompletionTokens != 4 {
		t.Errorf("arguments %q, finish %q, usage %+v", args.String(), chunks[5].Choices[0].FinishReason, chunks[6].Usage)
	}

	// openai-go's accumulator rebuilds the same call.
	stream := newOpenAIGo(srv).Chat.Completions.NewStreaming(t.Context(), oai.ChatCompletionNewParams{
		Model:    "m",
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("weather?")},
		Tools: []oai.ChatCompletionToolUnionParam{oai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		})},
		ToolChoice: oai.ChatCompletionToolChoiceOptionUnionParam{OfFunctionToolChoice: &oai.ChatCompletionNamedToolChoiceParam{
			Function: oai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"},
		}},
	})
	defer stream.Close()
	var acc oai.ChatCompletionAccumulator
	var finished *oai.FinishedChatCompletionToolCall
	for stream.Next() {
		acc.AddChunk(stream.Current())
		if tc, ok := acc.JustFinishedToolCall(); ok {
			finished = &tc
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if finished == nil || finished.ID != "call_2" || finished.Name != "get_weather" || finished.Arguments != `{"city":"llmtest"}` {
		t.Errorf("openai-go finished tool call %+v", finished)
	}
	if ch := acc.Choices[0]; ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Arguments != `{"city":"llmtest"}` {
		t.Errorf("openai-go accumulated %+v", ch)
	}
}

// TestChatToolCallFaults places faults in a tool-call stream: its first chunk already
// carries output, so n counts every chunk.
func TestChatToolCallFaults(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(3, "x "))
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}],"tools":[` +
		`{"type":"function","function":{"name":"f","parameters":{"properties":{"a":{"type":"integer"},"b":{"type":"boolean"}}}}}],"tool_choice":"required"}`
	for _, tc := range []struct {
		fault  llmtest.Fault
		chunks int // data events before the end
		done   bool
	}{
		{llmtest.ResetAfter(0), 0, false},
		{llmtest.ResetAfter(1), 1, false},
		{llmtest.Truncate(4), 4, false},
		{llmtest.Truncate(99), 4, false},
		{llmtest.Fault{Kind: llmtest.KindOversized, Size: 64, AfterChunks: 2}, 1 + 1 + 3 + 1, true},
	} {
		srv.Enqueue(tc.fault)
		r := post(t, srv, llmtest.PathChatCompletions, body)
		data := sseData(r.body)
		done := len(data) > 0 && data[len(data)-1] == "[DONE]"
		if done {
			data = data[:len(data)-1]
		}
		if len(data) != tc.chunks || done != tc.done {
			t.Errorf("%v/%d: %d chunks, [DONE] %v; want %d, %v", tc.fault.Kind, tc.fault.AfterChunks, len(data), done, tc.chunks, tc.done)
		}
		if tc.fault.Kind != llmtest.KindOversized {
			continue
		}
		var args strings.Builder
		for _, d := range data[1 : len(data)-1] {
			var c openai.ChatCompletionStreamResponse
			if err := json.Unmarshal([]byte(d), &c); err != nil {
				t.Fatal(err)
			}
			args.WriteString(c.Choices[0].Delta.ToolCalls[0].Function.Arguments)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(args.String()), &v); err != nil || len(args.String()) != len(`{"a":1,"b":true}`)+64 {
			t.Errorf("padded arguments %q are not the JSON object: %v", args.String(), err)
		}
	}
}

func TestToolArguments(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(1, "x "))
	for _, tc := range []struct{ params, args string }{
		{`null`, `{}`},
		{`{"type":"object"}`, `{}`},
		{`{"properties":[]}`, `{}`},
		{`{"properties":{"s":{"type":"string"},"n":{"type":"number"},"o":{"type":"object"},"l":{"type":"array"},"x":{},"z":{"type":"null"}}}`,
			`{"l":[],"n":1,"o":{},"s":"llmtest","x":null,"z":null}`},
		{`{"properties":{"e":{"enum":[ "a<b" , 2]},"c":{"const":[ 1 ]},"bad":3}}`, `{"bad":null,"c":[1],"e":"a<b"}`},
		{`{"properties":{"k\"ey":{"type":["null","integer"]}}}`, `{"k\"ey":1}`},
	} {
		body := `{"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":` + tc.params + `}],"tool_choice":"required"}`
		r := post(t, srv, llmtest.PathResponses, body)
		var resp struct {
			Output []struct{ Arguments string } `json:"output"`
		}
		if err := json.Unmarshal([]byte(r.body), &resp); err != nil || r.status != 200 || resp.Output[0].Arguments != tc.args {
			t.Errorf("parameters %s: %d %s, want arguments %s", tc.params, r.status, r.body, tc.args)
		}
	}
}
