package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// refUsage decodes usage the way Fields documents it, with encoding/json and
// exact key matching (maps, last duplicate wins).
func refUsage(t *testing.T, data []byte) (state UsageState, u Usage) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatalf("encoding/json rejected a top-level object: %v", err)
	}
	raw, ok := top["usage"]
	if !ok {
		return UsageAbsent, u
	}
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return UsageNull, u
	}
	if raw[0] != '{' {
		return UsageAbsent, u
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("usage object: %v", err)
	}
	get := func(k string) (int64, bool) {
		r, ok := m[k]
		if !ok || string(bytes.TrimSpace(r)) == "null" {
			return 0, false
		}
		var v int64
		if err := json.Unmarshal(r, &v); err != nil {
			return 0, false
		}
		return v, true
	}
	if v, ok := get("prompt_tokens"); ok {
		u.InputTokens, u.HasInput = v, true
	} else if v, ok := get("input_tokens"); ok {
		u.InputTokens, u.HasInput = v, true
	}
	if v, ok := get("completion_tokens"); ok {
		u.OutputTokens, u.HasOutput = v, true
	} else if v, ok := get("output_tokens"); ok {
		u.OutputTokens, u.HasOutput = v, true
	}
	u.TotalTokens, u.HasTotal = get("total_tokens")
	return UsagePresent, u
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		chunkContent, chunkRole, chunkFinish, chunkUsage, fullResponse,
		`{"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}`,
		`{"usage":{"prompt_tokens":1.0,"completion_tokens":-0,"total_tokens":99999999999999999999}}`,
		`{"error":{"message":"x","type":"y","code":429}}`,
		`{"error":"boom"}`,
		`{"usage":{"Prompt_Tokens":1,"prompt\u005ftokens":2}}`,
		`{"choices":[{"text":"a","finish_reason":"length"}]}`,
		`{"a":[{},[],"\ud83d\ude00",true,false,null,-1.5e+3]}`,
		`[DONE]`, `{"a":1,}`, `{`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fl Fields
		err := Parse(data, &fl)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(data) {
				t.Fatalf("bad error %v", err)
			}
		}
		valid := json.Valid(data)
		isObject := valid && bytes.TrimSpace(data)[0] == '{'
		if (err == nil) != isObject {
			t.Fatalf("Parse err = %v, but encoding/json valid=%v object=%v", err, valid, isObject)
		}
		if err != nil {
			return
		}
		state, u := refUsage(t, data)
		if state != fl.UsageState || u != fl.Usage {
			t.Fatalf("usage: got %v %+v, encoding/json says %v %+v", fl.UsageState, fl.Usage, state, u)
		}
		// Every reported slice lies inside the input.
		for _, s := range [][]byte{fl.ID, fl.Model, fl.Object, fl.Content, fl.Error.Message, fl.Error.Type, fl.Error.Code, fl.Error.Param} {
			if s != nil && !within(data, s) {
				t.Fatalf("slice %q is not inside the input", s)
			}
		}
		for _, r := range fl.Reasons() {
			if !within(data, r) || len(r) == 0 {
				t.Fatalf("finish reason %q", r)
			}
		}
		if fl.Choices < -1 || (fl.Choices <= 0 && fl.NumFinishReasons > 0) {
			t.Fatalf("choices %d reasons %d", fl.Choices, fl.NumFinishReasons)
		}
		_ = Unquote(fl.Model)
	})
}

func within(outer, inner []byte) bool {
	if len(inner) == 0 {
		return true
	}
	for i := 0; i+len(inner) <= len(outer); i++ {
		if &outer[i] == &inner[0] {
			return true
		}
	}
	return false
}
