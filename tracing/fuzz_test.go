package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/infermesh/infermesh/internal/sse"
	"github.com/infermesh/infermesh/tracing"
)

// refStreamUsage computes, with encoding/json, the usage the call span should
// report for a stream: the last event whose data is a JSON object with a
// "usage" object wins; counts are kept when they are non-negative integers.
func refStreamUsage(stream []byte) (in, out string) {
	s := sse.NewScanner(bytes.NewReader(stream), sse.Options{})
	for s.Next() {
		var top map[string]json.RawMessage
		if json.Unmarshal(s.Event().Data, &top) != nil {
			continue
		}
		raw, ok := top["usage"]
		if !ok || len(bytes.TrimSpace(raw)) == 0 || bytes.TrimSpace(raw)[0] != '{' {
			continue
		}
		var u map[string]json.RawMessage
		if json.Unmarshal(raw, &u) != nil {
			continue
		}
		get := func(keys ...string) string {
			for _, k := range keys {
				r, ok := u[k]
				if !ok || string(bytes.TrimSpace(r)) == "null" {
					continue
				}
				var v int64
				if json.Unmarshal(r, &v) != nil {
					// Present but not an integer: this spelling is unusable,
					// and it still shadows the other spelling.
					return ""
				}
				if v < 0 {
					return ""
				}
				return strconv.FormatInt(v, 10)
			}
			return ""
		}
		in, out = get("prompt_tokens", "input_tokens"), get("completion_tokens", "output_tokens")
	}
	return in, out
}

// FuzzStreamUsage feeds arbitrary bytes as an SSE stream through the scanner
// and Call.ObserveEvent, and checks the span's usage against encoding/json.
func FuzzStreamUsage(f *testing.F) {
	f.Add([]byte(sseStream))
	f.Add([]byte("data: {\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"))
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":2.5}}\n\ndata: {\"usage\":null}\n\n"))
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":1}}\n\ndata: {\"usage\":{\"prompt_tokens\":2}\n\n"))
	f.Add([]byte("data: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: [DONE]\n\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		h := newHarness(t, tracing.Config{CaptureContent: true, MaxContentBytes: 64})
		_, call := h.in.Start(context.Background(), tracing.Request{Model: "m", Stream: true})
		s := sse.NewScanner(bytes.NewReader(stream), sse.Options{})
		n := 0
		for s.Next() {
			call.ObserveEvent(s.Event().Data)
			n++
		}
		call.End(s.Err(), "")
		spans := h.spans.GetSpans()
		if len(spans) != 1 {
			t.Fatalf("%d spans", len(spans))
		}
		a := attrMap(spans[0].Attributes)
		wantIn, wantOut := refStreamUsage(stream)
		if a["gen_ai.usage.input_tokens"] != wantIn || a["gen_ai.usage.output_tokens"] != wantOut {
			t.Fatalf("usage in=%q out=%q, encoding/json says in=%q out=%q",
				a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"], wantIn, wantOut)
		}
		chunks, _ := strconv.Atoi(a["infermesh.stream.chunks"])
		if chunks > n {
			t.Fatalf("%d chunks counted from %d events", chunks, n)
		}
		if out, ok := a["gen_ai.output.messages"]; ok && !json.Valid([]byte(out)) {
			t.Fatalf("output messages are not valid JSON: %s", out)
		}
	})
}
