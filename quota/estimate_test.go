package quota

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEstimateTokens(t *testing.T) {
	for _, tc := range []struct {
		body       string
		defaultMax int
		answer     int // the estimate less len(body)/4
	}{
		{`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":256}`, 1000, 256},
		{`{"max_completion_tokens": 100, "max_tokens": 50}`, 1000, 100},
		{`{"input":"hi","max_output_tokens":64}`, 1000, 64},
		{`{"model":"m"}`, 1000, 1000},
		{`{"model":"m"}`, -5, 0},
		{`{"max_tokens":null}`, 7, 7},
		{`{"max_tokens":"256"}`, 7, 7},
		{`{"max_tokens":-1}`, 7, 7},
		{`{"max_tokens":1.5}`, 7, 7},
		{`{"max_tokens":1,"max_tokens":2}`, 7, 2},
		{`{"max_tokens":99999999999999999999999}`, 7, maxCount},
		{`{"metadata":{"max_tokens":5},"tools":[{"max_tokens":6}]}`, 7, 7},
		{`{"messages":[{"content":"a \"max_tokens\": 9 \\"}],"max_tokens":3}`, 7, 3},
		{`{"max\u005ftokens":12}`, 7, 12},
		{` { "max_tokens" : 12 } `, 7, 12},
		{`["max_tokens", 5]`, 7, 7},
		{`not json`, 7, 7},
		{``, 7, 7},
		{`{"max_tokens":12`, 7, 7}, // not JSON: the upstream will say what is wrong with it
		{`{"a":"unterminated,"max_tokens":12}`, 7, 7},
	} {
		want := len(tc.body)/4 + tc.answer
		if got := EstimateTokens([]byte(tc.body), tc.defaultMax); got != want {
			t.Errorf("EstimateTokens(%s, %d) = %d, want %d", tc.body, tc.defaultMax, got, want)
		}
	}
}

// FuzzEstimateTokens compares the estimate with encoding/json on valid JSON objects, and
// checks bounds on anything.
func FuzzEstimateTokens(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi \"there\" \\"}],"max_tokens":256}`))
	f.Add([]byte(`{"max_completion_tokens": 100, "max_tokens": 50, "x": [1, {"max_tokens": 9}]}`))
	f.Add([]byte(`{"max\u005foutput_tokens":64, "max_tokens":"7"}`))
	f.Add([]byte(`{"a":{"b":[[],{}]},"max_tokens":0}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		const def = 10
		got := EstimateTokens(body, def) - len(body)/4
		if got < 0 || got > maxCount {
			t.Fatalf("EstimateTokens = %d beyond the prompt for %d bytes", got, len(body))
		}
		var members map[string]json.RawMessage
		if !json.Valid(body) || json.Unmarshal(body, &members) != nil || members == nil {
			if got != def {
				t.Fatalf("a body that is not a JSON object: answer %d, want the default", got)
			}
			return
		}
		want, found := 0, false
		for _, name := range []string{"max_tokens", "max_completion_tokens", "max_output_tokens"} {
			raw, ok := members[name]
			if !ok || strings.Trim(string(raw), "0123456789") != "" || len(raw) == 0 {
				continue
			}
			want, found = max(want, refCount(string(raw))), true
		}
		if !found {
			want = def
		}
		if got != want {
			t.Fatalf("EstimateTokens(%s) answer %d; encoding/json says %d", body, got, want)
		}
	})
}
