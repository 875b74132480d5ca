package llmtest_test

import (
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	openai "github.com/sashabaranov/go-openai"
)

const responsesBody = `{"model":"m","input":"hi"}`
const responsesStreamBody = `{"model":"m","input":"hi","stream":true}`

// weatherTool is a function tool with a schema of every kind of property.
const weatherTool = `{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{` +
	`"city":{"type":"string"},"days":{"type":"integer"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},` +
	`"detail":{"type":["null","boolean"]},"kind":{"const":{"a":[1, 2]}}}}}`

// weatherArgs is the server's call of weatherTool.
const weatherArgs = `{"city":"llmtest","days":1,"detail":true,"kind":{"a":[1,2]},"unit":"celsius"}`

func TestResponsesUnary(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(3, "fine thanks "))
	resp, err := newOpenAIGo(srv).Responses.New(t.Context(), responses.ResponseNewParams{
		Model:        "gpt-4o-mini",
		Instructions: oai.String("Be brief."),
		Input:        responses.ResponseNewParamsInputUnion{OfString: oai.String("How are you today?")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != "resp_1" || resp.Object != "response" || resp.Model != "gpt-4o-mini" || resp.Status != responses.ResponseStatusCompleted {
		t.Errorf("id %q, object %q, model %q, status %q", resp.ID, resp.Object, resp.Model, resp.Status)
	}
	if got := resp.OutputText(); got != "fine thanks fine thanks fine thanks " {
		t.Errorf("output text %q", got)
	}
	msg := resp.Output[0].AsMessage()
	if len(resp.Output) != 1 || msg.Type != "message" || msg.ID != "msg_1" || msg.Role != "assistant" || msg.Status != "completed" {
		t.Errorf("output %+v", resp.Output)
	}
	in := llmtest.ChatPromptTokens("Be brief.", "How are you today?")
	u := resp.Usage
	if u.InputTokens != int64(in) || u.OutputTokens != 6 || u.TotalTokens != int64(in)+6 ||
		!u.InputTokensDetails.JSON.CachedTokens.Valid() || !u.OutputTokensDetails.JSON.ReasoningTokens.Valid() {
		t.Errorf("usage %+v, want input %d, output 6", u, in)
	}
	if resp.Instructions.OfString != "Be brief." || resp.IncompleteDetails.Reason != "" || resp.Error.Message != "" {
		t.Errorf("instructions %+v, incomplete %+v, error %+v", resp.Instructions, resp.IncompleteDetails, resp.Error)
	}

	// go-openai decodes the same answer.
	r2, err := newOpenAI(srv).CreateResponse(t.Context(), openai.CreateResponseRequest{Model: "gpt-4o-mini", Input: "hi there"})
	if err != nil {
		t.Fatal(err)
	}
	if r2.ID != "resp_2" || r2.GetOutputText() != "fine thanks fine thanks fine thanks " || r2.Usage == nil ||
		r2.Usage.InputTokens != llmtest.ChatPromptTokens("hi there") || r2.Usage.OutputTokens != 6 {
		t.Errorf("go-openai: %+v", r2)
	}
}

func TestResponsesIncomplete(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(20, "word "))
	params := responses.ResponseNewParams{
		Model: "m", MaxOutputTokens: oai.Int(16),
		Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("go on")},
	}
	resp, err := newOpenAIGo(srv).Responses.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != responses.ResponseStatusIncomplete || resp.IncompleteDetails.Reason != "max_output_tokens" ||
		resp.OutputText() != strings.Repeat("word ", 16) || resp.Usage.OutputTokens != 16 || resp.MaxOutputTokens != 16 ||
		resp.Output[0].AsMessage().Status != "incomplete" {
		t.Errorf("status %q, details %+v, text %q, usage %+v", resp.Status, resp.IncompleteDetails, resp.OutputText(), resp.Usage)
	}

	stream := newOpenAIGo(srv).Responses.NewStreaming(t.Context(), params)
	defer stream.Close()
	var types []string
	for stream.Next() {
		types = append(types, stream.Current().Type)
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(types) != 4+16+3+1 || types[len(types)-1] != "response.incomplete" {
		t.Errorf("%d events, the last %q; want 24 ending in response.incomplete", len(types), types[len(types)-1])
	}
}

// TestResponsesStreamWire reads a Responses stream as bytes: named events whose data carries
// the same type and increasing sequence numbers, in the API's order, and no [DONE].
func TestResponsesStreamWire(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(2, "a "))
	r := post(t, srv, llmtest.PathResponses, responsesStreamBody)
	if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("status %d, content-type %q", r.status, r.header.Get("Content-Type"))
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta", "response.output_text.done", "response.content_part.done",
		"response.output_item.done", "response.completed"}
	evs := sseEvents(r.body)
	if got := eventNames(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q\nwant %q", got, want)
	}
	for i, ev := range evs {
		v := decode(t, ev.data)
		if v["type"] != ev.name || v["sequence_number"] != float64(i) {
			t.Errorf("event %d (%s): type %v, sequence_number %v", i, ev.name, v["type"], v["sequence_number"])
		}
	}
	if strings.Contains(r.body, "[DONE]") || !strings.HasSuffix(r.body, "}\n\n") {
		t.Errorf("the stream must end after response.completed: %q", r.body[max(len(r.body)-40, 0):])
	}
	delta := decode(t, evs[4].data)
	if delta["delta"] != "a " || delta["item_id"] != "msg_1" || delta["output_index"] != 0.0 || delta["content_index"] != 0.0 {
		t.Errorf("delta %v", delta)
	}
	done := decode(t, evs[9].data)["response"].(map[string]any)
	if done["status"] != "completed" || done["usage"].(map[string]any)["output_tokens"] != 2.0 {
		t.Errorf("completed response %v", done)
	}
	if created := decode(t, evs[0].data)["response"].(map[string]any); created["status"] != "in_progress" || created["usage"] != nil {
		t.Errorf("created response %v", created)
	}
}

func eventNames(evs []sseEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.name
	}
	return out
}

// TestResponsesStreamSDKs decodes a stream with openai-go's and go-openai's own types.
func TestResponsesStreamSDKs(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(3, "tok "))
	stream := newOpenAIGo(srv).Responses.NewStreaming(t.Context(), responses.ResponseNewParams{
		Model: "m", Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("Tell me")},
	})
	defer stream.Close()
	var text strings.Builder
	var final responses.Response
	for stream.Next() {
		switch ev := stream.Current(); ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.AsResponseOutputTextDelta().Delta)
		case "response.completed":
			final = ev.AsResponseCompleted().Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "tok tok tok " || final.OutputText() != text.String() || final.Usage.OutputTokens != 3 ||
		final.Usage.InputTokens != int64(llmtest.ChatPromptTokens("Tell me")) {
		t.Errorf("openai-go: text %q, final %q, usage %+v", text.String(), final.OutputText(), final.Usage)
	}

	s, err := newOpenAI(srv).CreateResponseStream(t.Context(), openai.CreateResponseRequest{Model: "m", Input: "Tell me"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	text.Reset()
	var last openai.ResponseStreamEvent
	for range 50 {
		ev, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == openai.ResponseStreamEventOutputTextDelta {
			text.WriteString(ev.Delta)
		}
		last = ev
	}
	if text.String() != "tok tok tok " || last.Type != openai.ResponseStreamEventCompleted || last.Response == nil || last.Response.Usage.OutputTokens != 3 {
		t.Errorf("go-openai: text %q, last %+v", text.String(), last)
	}
}

func TestResponsesToolCall(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(4, "x "))
	body := `{"model":"m","input":"weather?","tools":[` + weatherTool + `],"tool_choice":"required"}`
	r := post(t, srv, llmtest.PathResponses, body)
	var resp responses.Response
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil || r.status != 200 {
		t.Fatalf("%d %s: %v", r.status, r.body, err)
	}
	call := resp.Output[0].AsFunctionCall()
	if len(resp.Output) != 1 || call.Type != "function_call" || call.Name != "get_weather" || call.CallID != "call_1" ||
		call.ID != "fc_1" || call.Arguments != weatherArgs || call.Status != "completed" || resp.Usage.OutputTokens != 4 {
		t.Errorf("output %+v, usage %+v", resp.Output, resp.Usage)
	}
	if got := resp.ToolChoice.OfToolChoiceMode; got != "required" || len(resp.Tools) != 1 || resp.Tools[0].Name != "get_weather" {
		t.Errorf("tool_choice %+v, tools %+v", resp.ToolChoice, resp.Tools)
	}

	// Streamed through openai-go, with the function named by tool_choice.
	stream := newOpenAIGo(srv).Responses.NewStreaming(t.Context(), responses.ResponseNewParams{
		Model: "m",
		Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("weather?")},
		Tools: []responses.ToolUnionParam{
			responses.ToolParamOfFunction("lookup", nil, false),
			responses.ToolParamOfFunction("get_weather", map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}, true),
		},
		ToolChoice: responses.ResponseNewParamsToolChoiceUnion{OfFunctionTool: &responses.ToolChoiceFunctionParam{Name: "get_weather"}},
	})
	defer stream.Close()
	var types []string
	var args strings.Builder
	var done responses.ResponseFunctionToolCall
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		switch ev.Type {
		case "response.output_item.added":
			if it := ev.AsResponseOutputItemAdded().Item.AsFunctionCall(); it.Name != "get_weather" || it.CallID != "call_2" || it.Arguments != "" {
				t.Errorf("added item %+v", it)
			}
		case "response.function_call_arguments.delta":
			args.WriteString(ev.Delta)
		case "response.output_item.done":
			done = ev.AsResponseOutputItemDone().Item.AsFunctionCall()
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	// {"city":"llmtest"} is 5 JSON tokens, sent in 4 pieces.
	// {"city":"llmtest"} is 5 JSON tokens, sent in 4 pieces.
	delta := "response.function_call_arguments.delta"
	want := []string{"response.created", "response.in_progress", "response.output_item.added", delta, delta, delta, delta,
		"response.function_call_arguments.done", "response.output_item.done", "response.completed"}
	if !slices.Equal(types, want) {
		t.Errorf("events %q\nwant %q", types, want)
	}
	if args.String() != `{"city":"llmtest"}` || done.Arguments != args.String() || done.Status != "completed" {
		t.Errorf("arguments %q, done %+v", args.String(), done)
	}
}

// TestResponsesInputItems counts the tokens of an input array.
func TestResponsesInputItems(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	body := `{"model":"m","instructions":"Be brief.","input":[` +
		`{"role":"user","content":"What is the weather?"},` +
		`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Let me see."}]},` +
		`{"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{\"city\": \"Paris\"}"},` +
		`{"type":"function_call_output","call_id":"c1","output":"sunny and warm"},` +
		`{"role":"user","content":[{"type":"input_text","text":"thanks"},{"type":"input_image","image_url":"data:,"}]},` +
		`{"type":"reasoning","id":"rs_1","summary":[]}]}`
	r := post(t, srv, llmtest.PathResponses, body)
	var resp responses.Response
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil || r.status != 200 {
		t.Fatalf("%d %s: %v", r.status, r.body, err)
	}
	want := llmtest.ChatPromptTokens("Be brief.", "What is the weather?", "Let me see.", `{"city": "Paris"}`, "sunny and warm", "thanks", "")
	if resp.Usage.InputTokens != int64(want) {
		t.Errorf("input tokens %d, want %d", resp.Usage.InputTokens, want)
	}
}

// respEvent is the part of a Responses stream event the fault tests look at.
type respEvent struct {
	Type           string `json:"type"`
	SequenceNumber int    `json:"sequence_number"`
	Code           string `json:"code"`
	Message        string `json:"message"`
	Delta          string `json:"delta"`
	Response       struct {
		Status string `json:"status"`
		Error  *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Usage  json.RawMessage `json:"usage"`
		Output []any           `json:"output"`
	} `json:"response"`
}

// respEvents decodes the events of a Responses SSE body; a last event whose data does not
// parse is reported as malformed.
func respEvents(t *testing.T, body string) (evs []respEvent, malformed bool) {
	t.Helper()
	for i, ev := range sseEvents(body) {
		var e respEvent
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
			if i != len(sseEvents(body))-1 {
				t.Fatalf("event %d %q does not parse: %v", i, ev.data, err)
			}
			return evs, true
		}
		if e.Type != ev.name || e.SequenceNumber != i {
			t.Errorf("event %d: name %q, type %q, sequence_number %d", i, ev.name, e.Type, e.SequenceNumber)
		}
		evs = append(evs, e)
	}
	return evs, false
}

func TestResponsesStreamFaults(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(3, "a "))
	const text = 11 // events of the stream: 4 before the deltas, 3 deltas, 3 after, response.completed
	for _, tc := range []struct {
		fault llmtest.Fault
		// events: the events sent before the end; last: the type of the last one
		events, deltas int
		last           string
		cut, malformed bool // the body ends in an unexpected EOF; the last event does not parse
	}{
		{llmtest.ResetAfter(0), 0, 0, "", true, false},
		{llmtest.ResetAfter(2), 2, 0, "response.in_progress", true, false},
		{llmtest.ResetAfter(4), 4, 0, "response.content_part.added", true, false},
		{llmtest.ResetAfter(5), 5, 1, "response.output_text.delta", true, false},
		{llmtest.ResetAfter(99), text - 1, 3, "response.output_item.done", true, false},
		{llmtest.ResetAfter(0).CountingOutput(), 4, 0, "response.content_part.added", true, false},
		{llmtest.ResetAfter(1).CountingOutput(), 5, 1, "response.output_text.delta", true, false},
		{llmtest.Truncate(3), 3, 0, "response.output_item.added", false, false},
		{llmtest.Truncate(99), text - 1, 3, "response.output_item.done", false, false},
		{llmtest.ErrorEvent(1), 2, 0, "error", false, false},
		{llmtest.ErrorEvent(6), 7, 2, "error", false, false},
		{llmtest.ResponseFailed(4), 5, 0, "response.failed", false, false},
		{llmtest.ResponseFailed(5), 6, 1, "response.failed", false, false},
		{llmtest.MalformedJSON(5), 5, 1, "response.output_text.delta", false, true},
		{llmtest.Fault{Kind: llmtest.KindOversized, Size: 1000}, text + 1, 4, "response.completed", false, false},
		{llmtest.Fault{Kind: llmtest.KindGzipBomb, Size: 1000, AfterChunks: 6}, text + 1, 4, "response.completed", false, false},
	} {
		name := tc.fault.Kind.String() + "/" + strconv.Itoa(tc.fault.AfterChunks)
		srv.Enqueue(tc.fault)
		r := post(t, srv, llmtest.PathResponses, responsesStreamBody)
		if r.status != 200 || tc.cut != errors.Is(r.err, io.ErrUnexpectedEOF) || !tc.cut && r.err != nil {
			t.Errorf("%s: status %d, body error %v; want 200, cut %v", name, r.status, r.err, tc.cut)
		}
		evs, malformed := respEvents(t, r.body)
		deltas := 0
		for _, e := range evs {
			if e.Type == "response.output_text.delta" {
				deltas++
			}
		}
		last := ""
		if len(evs) > 0 {
			last = evs[len(evs)-1].Type
		}
		if len(evs) != tc.events || deltas != tc.deltas || last != tc.last || malformed != tc.malformed {
			t.Errorf("%s: %d events (%d deltas), the last %q, malformed %v; want %d (%d), %q, %v",
				name, len(evs), deltas, last, malformed, tc.events, tc.deltas, tc.last, tc.malformed)
		}
	}
}

func TestResponsesErrorAndFailedEvents(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	srv.Enqueue(llmtest.ErrorEvent(4))
	r := post(t, srv, llmtest.PathResponses, responsesStreamBody)
	evs := sseEvents(r.body)
	if want := `{"type":"error","code":"overloaded_error","message":"Overloaded","param":null,"sequence_number":4}`; len(evs) != 5 || evs[4].name != "error" || evs[4].data != want {
		t.Errorf("error event %+v, want %s", evs[len(evs)-1], want)
	}

	// openai-go reads the error event as an event of type "error"; go-openai too.
	srv.Enqueue(llmtest.Fault{Kind: llmtest.KindErrorEvent, AfterChunks: 2, Code: "server_error", Message: "boom"})
	stream := newOpenAIGo(srv).Responses.NewStreaming(t.Context(), responses.ResponseNewParams{
		Model: "m", Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("hi")},
	})
	var last responses.ResponseStreamEventUnion
	for stream.Next() {
		last = stream.Current()
	}
	stream.Close()
	if e := last.AsError(); stream.Err() != nil || e.Type != "error" || e.Code != "server_error" || e.Message != "boom" || e.SequenceNumber != 2 {
		t.Errorf("openai-go: last event %+v, error %v", e, stream.Err())
	}

	srv.Enqueue(llmtest.Fault{Kind: llmtest.KindResponseFailed, AfterChunks: 5, Code: "rate_limit_exceeded", Message: "slow down"})
	s, err := newOpenAI(srv).CreateResponseStream(t.Context(), openai.CreateResponseRequest{Model: "m", Input: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var events []openai.ResponseStreamEvent
	for range 50 {
		ev, err := s.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		events = append(events, ev)
	}
	f := events[len(events)-1]
	if len(events) != 6 || f.Type != openai.ResponseStreamEventFailed || f.SequenceNumber != 5 || f.Response == nil ||
		f.Response.Status != "failed" || f.Response.Error == nil || f.Response.Error.Code != "rate_limit_exceeded" ||
		f.Response.Error.Message != "slow down" || len(f.Response.Output) != 0 || f.Response.Usage != nil {
		t.Errorf("go-openai: %d events, last %+v", len(events), f)
	}
}

func TestResponsesUnaryFaults(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	c := newOpenAIGo(srv)
	params := responses.ResponseNewParams{Model: "m", Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("hi")}}

	srv.Enqueue(llmtest.Status(429))
	_, err := c.Responses.New(t.Context(), params)
	var apiErr *oai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "requests" {
		t.Errorf("429: %v", err)
	}

	srv.Enqueue(llmtest.ResponseFailed(0))
	resp, err := c.Responses.New(t.Context(), params)
	if err != nil || resp.Status != responses.ResponseStatusFailed || resp.Error.Code != "server_error" || len(resp.Output) != 0 {
		t.Errorf("failed: %+v, %v", resp, err)
	}

	srv.Enqueue(llmtest.ErrorEvent(0))
	r := post(t, srv, llmtest.PathResponses, responsesBody)
	if r.status != 200 || r.body != `{"error":{"message":"Overloaded","type":"overloaded_error","param":null,"code":null}}`+"\n" {
		t.Errorf("error event: %d %q", r.status, r.body)
	}

	normal := post(t, srv, llmtest.PathResponses, responsesBody)
	for _, f := range []llmtest.Fault{llmtest.ResetAfter(0), llmtest.MalformedJSON(0), llmtest.Truncate(0)} {
		srv.Enqueue(f)
		r := post(t, srv, llmtest.PathResponses, responsesBody)
		if r.status != 200 || len(r.body) != (len(normal.body))/2 || (f.Kind == llmtest.KindStreamReset) != errors.Is(r.err, io.ErrUnexpectedEOF) {
			t.Errorf("%v: %d, %d of %d bytes, %v", f.Kind, r.status, len(r.body), len(normal.body), r.err)
		}
	}

	srv.Enqueue(llmtest.Reset())
	if _, err := c.Responses.New(t.Context(), params); err == nil || errors.As(err, &apiErr) {
		t.Errorf("reset: %v, want a transport error", err)
	}

	srv.Enqueue(llmtest.EnvoyOverflow())
	if r := post(t, srv, llmtest.PathResponses, responsesBody); r.status != 503 || r.header.Get("X-Envoy-Overloaded") != "true" {
		t.Errorf("envoy overflow: %d %v", r.status, r.header)
	}
}
