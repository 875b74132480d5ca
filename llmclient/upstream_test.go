package llmclient_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstream is an OpenAI-compatible server written for these tests with
// net/http/httptest (not llmtest): chat (with tool calls when the request has
// tools), embeddings and the Responses API, unary and streamed, with the faults the
// tests ask for, one request at a time.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	faults []fault // taken in order, one per request; then healthy answers
	reqs   []*http.Request
	bodies [][]byte
}

// fault is what one request gets.
type fault struct {
	status   int    // an error status with an OpenAI error body
	envoy    string // an Envoy plain-text local reply (with status 503 or 504)
	inBody   string // a 200 whose body (or first event) is this error object's type
	cutAfter int    // a stream cut (connection closed) after this many events; -1 = none
	truncate int    // a stream that ends cleanly without its terminal event after this many events
	stall    time.Duration
	header   http.Header
}

var healthy = fault{cutAfter: -1, truncate: -1}

func newUpstream(t *testing.T, faults ...fault) *upstream {
	t.Helper()
	u := &upstream{faults: faults}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

// hits returns the requests received on path.
func (u *upstream) hits(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.reqs {
		if r.URL.Path == path {
			n++
		}
	}
	return n
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, r)
	u.bodies = append(u.bodies, body)
	f := healthy
	if len(u.faults) > 0 {
		f, u.faults = u.faults[0], u.faults[1:]
	}
	u.mu.Unlock()
	for k, vs := range f.header {
		w.Header()[k] = vs
	}
	if f.stall > 0 {
		select {
		case <-time.After(f.stall):
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case f.envoy != "":
		w.Header().Set("Content-Type", "text/plain")
		code := http.StatusServiceUnavailable
		if strings.Contains(f.envoy, "timeout") {
			code = http.StatusGatewayTimeout
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, f.envoy)
		return
	case f.status != 0:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.status)
		_, _ = fmt.Fprintf(w, `{"error":{"message":"upstream said %d","type":"server_error","param":null,"code":null}}`, f.status)
		return
	}
	var req map[string]any
	_ = json.Unmarshal(body, &req)
	stream, _ := req["stream"].(bool)
	_, tools := req["tools"]
	var events []event
	switch {
	case strings.HasSuffix(r.URL.Path, "/embeddings"):
		writeJSON(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.6,0.8]}],"model":"emb","usage":{"prompt_tokens":2,"total_tokens":2}}`)
		return
	case strings.HasSuffix(r.URL.Path, "/responses"):
		events = responsesEvents(f.inBody)
		if !stream {
			writeJSON(w, responseObject(f.inBody))
			return
		}
	default:
		events = chatEvents(tools, f.inBody, includeUsage(req))
		if !stream {
			writeJSON(w, chatObject(tools, f.inBody))
			return
		}
	}
	writeStream(w, events, f)
}

func includeUsage(req map[string]any) bool {
	so, _ := req["stream_options"].(map[string]any)
	b, _ := so["include_usage"].(bool)
	return b
}

func writeJSON(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, body)
}

// event is one server-sent event: its name (Responses) and its data.
type event struct{ name, data string }

func writeStream(w http.ResponseWriter, events []event, f fault) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	for i, ev := range events {
		if i == f.cutAfter {
			fl.Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		if i == f.truncate {
			return
		}
		if ev.name != "" {
			_, _ = fmt.Fprintf(w, "event: %s\n", ev.name)
		}
		_, _ = fmt.Fprintf(w, "data: %s\n\n", ev.data)
		fl.Flush()
	}
}

const chatHead = `"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini"`

// chatEvents is a chat stream: role, content (or tool-call deltas), finish, usage,
// [DONE]. The first event that carries output is events[1].
func chatEvents(tools bool, inBody string, usage bool) []event {
	ev := []event{{data: `{` + chatHead + `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`}}
	if inBody != "" {
		return append(ev, event{data: `{"error":{"message":"` + inBody + ` in stream","type":"` + inBody + `"}}`})
	}
	finish := "stop"
	if tools {
		finish = "tool_calls"
		ev = append(ev,
			event{data: `{` + chatHead + `,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"weather","arguments":""}}]}}]}`},
			event{data: `{` + chatHead + `,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}`},
			event{data: `{` + chatHead + `,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Oslo\"}"}}]}}]}`})
	} else {
		for _, w := range []string{"Hel", "lo ", "there"} {
			ev = append(ev, event{data: `{` + chatHead + `,"choices":[{"index":0,"delta":{"content":"` + w + `"},"finish_reason":null}]}`})
		}
	}
	ev = append(ev, event{data: `{` + chatHead + `,"choices":[{"index":0,"delta":{},"finish_reason":"` + finish + `"}]}`})
	if usage {
		ev = append(ev, event{data: `{` + chatHead + `,"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`})
	}
	return append(ev, event{data: "[DONE]"})
}

func chatObject(tools bool, inBody string) string {
	if inBody != "" {
		return `{"error":{"message":"` + inBody + ` in body","type":"` + inBody + `","param":null,"code":null}}`
	}
	msg := `{"role":"assistant","content":"Hello there"}`
	finish := "stop"
	if tools {
		msg = `{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]}`
		finish = "tool_calls"
	}
	return `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":` + msg +
		`,"finish_reason":"` + finish + `"}],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`
}

const responseDone = `{"id":"resp_1","object":"response","created_at":1,"status":"completed","error":null,"incomplete_details":null,"model":"gpt-4o",` +
	`"output":[{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello there","annotations":[]}]}],` +
	`"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":0},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":8}}`

func responseObject(inBody string) string {
	if inBody != "" {
		return `{"error":{"message":"` + inBody + ` in body","type":"` + inBody + `","param":null,"code":null}}`
	}
	return responseDone
}

// responsesEvents is a Responses API stream. The first event that carries output is
// events[4], the first output_text.delta.
func responsesEvents(inBody string) []event {
	seq := 0
	e := func(typ, rest string) event {
		d := fmt.Sprintf(`{"type":%q,"sequence_number":%d%s}`, typ, seq, rest)
		seq++
		return event{name: typ, data: d}
	}
	start := `,"response":{"id":"resp_1","object":"response","created_at":1,"status":"in_progress","model":"gpt-4o","output":[]}`
	ev := []event{
		e("response.created", start),
		e("response.in_progress", start),
		e("response.output_item.added", `,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}`),
		e("response.content_part.added", `,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}`),
	}
	if inBody != "" {
		return append(ev, e("error", `,"code":"`+inBody+`","message":"`+inBody+` in stream","param":null`))
	}
	for _, w := range []string{"Hel", "lo ", "there"} {
		ev = append(ev, e("response.output_text.delta", `,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"`+w+`","logprobs":[]`))
	}
	return append(ev,
		e("response.output_text.done", `,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hello there","logprobs":[]`),
		e("response.content_part.done", `,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"Hello there","annotations":[]}`),
		e("response.output_item.done", `,"output_index":0,"item":{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello there","annotations":[]}]}`),
		e("response.completed", `,"response":`+responseDone),
	)
}
