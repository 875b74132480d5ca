package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const (
	chunkContent = `{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}`
	chunkRole    = `{"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}]}`
	chunkFinish  = `{"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`
	chunkUsage   = `{"id":"c1","object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":0}}}`
	fullResponse = `{
  "id": "chatcmpl-9",
  "object": "chat.completion",
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Hi \"there\"", "refusal": null}, "logprobs": null, "finish_reason": "stop"},
    {"index": 1, "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}
  ],
  "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29, "completion_tokens_details": {"reasoning_tokens": 0}}
}`
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		check   func(t *testing.T, f *Fields)
		content bool
	}{
		{"content chunk", chunkContent, func(t *testing.T, f *Fields) {
			eq(t, "id", f.ID, "chatcmpl-AbC123")
			eq(t, "model", f.Model, "gpt-4o-mini-2024-07-18")
			eq(t, "object", f.Object, "chat.completion.chunk")
			eq(t, "content", f.Content, " world")
			if f.UsageState != UsageNull || f.Choices != 1 || f.NumFinishReasons != 0 {
				t.Fatalf("usage %v choices %d reasons %d", f.UsageState, f.Choices, f.NumFinishReasons)
			}
		}, true},
		{"role-only chunk", chunkRole, func(t *testing.T, f *Fields) {
			if f.UsageState != UsageAbsent || f.Content != nil {
				t.Fatalf("usage %v content %q", f.UsageState, f.Content)
			}
		}, false},
		{"finish chunk", chunkFinish, func(t *testing.T, f *Fields) {
			if got := fmt.Sprintf("%s", f.Reasons()); got != "[stop]" {
				t.Fatalf("reasons %s", got)
			}
		}, true},
		{"usage-only chunk", chunkUsage, func(t *testing.T, f *Fields) {
			want := Usage{InputTokens: 12, OutputTokens: 34, TotalTokens: 46, HasInput: true, HasOutput: true, HasTotal: true}
			if f.Usage != want || f.UsageState != UsagePresent || f.Choices != 0 {
				t.Fatalf("usage %+v state %v choices %d", f.Usage, f.UsageState, f.Choices)
			}
		}, false},
		{"full response", fullResponse, func(t *testing.T, f *Fields) {
			eq(t, "content", f.Content, `Hi \"there\"`)
			if Unquote(f.Content) != `Hi "there"` {
				t.Fatalf("Unquote = %q", Unquote(f.Content))
			}
			if got := fmt.Sprintf("%s", f.Reasons()); got != "[stop tool_calls]" || f.Choices != 2 {
				t.Fatalf("reasons %s choices %d", got, f.Choices)
			}
			if f.Usage.InputTokens != 19 || f.Usage.OutputTokens != 10 || f.Usage.TotalTokens != 29 {
				t.Fatalf("usage %+v", f.Usage)
			}
		}, true},
		{"responses spelling", `{"usage":{"input_tokens":5,"output_tokens":7}}`, func(t *testing.T, f *Fields) {
			want := Usage{InputTokens: 5, OutputTokens: 7, HasInput: true, HasOutput: true}
			if f.Usage != want || f.Choices != -1 {
				t.Fatalf("usage %+v choices %d", f.Usage, f.Choices)
			}
		}, false},
		{"chat spelling wins", `{"usage":{"input_tokens":5,"prompt_tokens":6,"output_tokens":7,"completion_tokens":8}}`, func(t *testing.T, f *Fields) {
			if f.Usage.InputTokens != 6 || f.Usage.OutputTokens != 8 {
				t.Fatalf("usage %+v", f.Usage)
			}
		}, false},
		{"non-integer counts ignored", `{"usage":{"prompt_tokens":1.5,"completion_tokens":"3","total_tokens":1e2}}`, func(t *testing.T, f *Fields) {
			if f.Usage != (Usage{}) || f.UsageState != UsagePresent {
				t.Fatalf("usage %+v", f.Usage)
			}
		}, false},
		{"negative and extreme counts", `{"usage":{"prompt_tokens":-3,"completion_tokens":9223372036854775807,"total_tokens":9223372036854775808}}`, func(t *testing.T, f *Fields) {
			if f.Usage.InputTokens != -3 || f.Usage.OutputTokens != 1<<63-1 || f.Usage.HasTotal {
				t.Fatalf("usage %+v", f.Usage)
			}
		}, false},
		{"usage of another type", `{"usage":[1]}`, func(t *testing.T, f *Fields) {
			if f.UsageState != UsageAbsent {
				t.Fatal(f.UsageState)
			}
		}, false},
		{"tool call delta", `{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}`, nil, true},
		{"empty tool calls", `{"choices":[{"delta":{"tool_calls":[ ]}}]}`, nil, false},
		{"reasoning_content", `{"choices":[{"delta":{"reasoning_content":"hmm"}}]}`, nil, true},
		{"reasoning", `{"choices":[{"delta":{"reasoning":"hmm"}}]}`, nil, true},
		{"refusal", `{"choices":[{"delta":{"refusal":"no"}}]}`, nil, true},
		{"function_call", `{"choices":[{"delta":{"function_call":{"name":"f"}}}]}`, nil, true},
		{"null function_call", `{"choices":[{"delta":{"function_call":null}}]}`, nil, false},
		{"content array", `{"choices":[{"message":{"content":[{"type":"text","text":"x"}]}}]}`, nil, true},
		{"legacy text", `{"object":"text_completion","choices":[{"text":"abc","finish_reason":null}]}`, func(t *testing.T, f *Fields) {
			eq(t, "content", f.Content, "abc")
		}, true},
		{"content in second choice", `{"choices":[{"delta":{"role":"assistant"}},{"delta":{"content":"x"}}]}`, func(t *testing.T, f *Fields) {
			if f.Content != nil || f.Choices != 2 {
				t.Fatalf("content %q choices %d", f.Content, f.Choices)
			}
		}, true},
		{"error object", `{"error":{"message":"Rate limit","type":"requests","param":null,"code":"rate_limit_exceeded"}}`, func(t *testing.T, f *Fields) {
			if !f.Error.Present || f.Error.Param != nil {
				t.Fatalf("%+v", f.Error)
			}
			eq(t, "message", f.Error.Message, "Rate limit")
			eq(t, "type", f.Error.Type, "requests")
			eq(t, "code", f.Error.Code, "rate_limit_exceeded")
		}, false},
		{"numeric code", `{"type":"error","error":{"code":529,"message":"Overloaded","type":"overloaded_error"}}`, func(t *testing.T, f *Fields) {
			eq(t, "code", f.Error.Code, "529")
			eq(t, "type", f.Error.Type, "overloaded_error")
		}, false},
		{"string error", `{"error":"model not found"}`, func(t *testing.T, f *Fields) {
			if !f.Error.Present {
				t.Fatal("not present")
			}
			eq(t, "message", f.Error.Message, "model not found")
		}, false},
		{"null error", `{"error":null,"id":"x"}`, func(t *testing.T, f *Fields) {
			if f.Error.Present {
				t.Fatal("present")
			}
		}, false},
		{"escaped keys", `{"mod\u0065l":"m","usage":{"prompt\u005ftokens":3}}`, func(t *testing.T, f *Fields) {
			eq(t, "model", f.Model, "m")
			if f.Usage.InputTokens != 3 {
				t.Fatalf("usage %+v", f.Usage)
			}
		}, false},
		{"duplicate usage resets", `{"usage":{"prompt_tokens":3},"usage":{"completion_tokens":4}}`, func(t *testing.T, f *Fields) {
			if f.Usage.HasInput || f.Usage.OutputTokens != 4 {
				t.Fatalf("usage %+v", f.Usage)
			}
		}, false},
		{"many finish reasons", `{"choices":[` + strings.Repeat(`{"finish_reason":"length"},`, 10) + `{"finish_reason":"stop"}]}`, func(t *testing.T, f *Fields) {
			if f.NumFinishReasons != 11 || len(f.Reasons()) != MaxFinishReasons {
				t.Fatalf("reasons %d stored %d", f.NumFinishReasons, len(f.Reasons()))
			}
		}, true},
		{"white space", " \r\n\t{ \"id\" : \"x\" , \"choices\" : [ ] } \n", func(t *testing.T, f *Fields) {
			eq(t, "id", f.ID, "x")
			if f.Choices != 0 {
				t.Fatal(f.Choices)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var f Fields
			if err := Parse([]byte(tt.in), &f); err != nil {
				t.Fatal(err)
			}
			if f.HasContent != tt.content {
				t.Fatalf("HasContent = %v, want %v", f.HasContent, tt.content)
			}
			if tt.check != nil {
				tt.check(t, &f)
			}
		})
	}
}

func eq(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		offset int
		msg    string
	}{
		{``, 0, "unexpected end of input"},
		{`[DONE]`, 1, "invalid character"},
		{`[1]`, 0, "not an object"},
		{`{"a":1,}`, 7, "expected a string key"},
		{`{"a" 1}`, 5, "expected ':'"},
		{`{"a":tru}`, 5, "invalid literal"},
		{`{"a":01}`, 6, "expected ',' or '}'"},
		{`{"a":"x` + "\x01" + `"}`, 7, "control character"},
		{`{"a":"\x"}`, 6, "invalid escape"},
		{`{"a":"\u12G4"}`, 6, "invalid \\u escape"},
		{`{"a":[1,]}`, 8, "unexpected ']'"},
		{`{"a":1} x`, 8, "after the top-level value"},
		{`{"usage":{"prompt_tokens":-}}`, 27, "invalid number"},
		{`{"choices":[{"delta":{"content":"x"`, 35, "unexpected end of input in object"},
		{`{"a":1.}`, 7, "digit expected after '.'"},
		{`{"a":1e}`, 7, "digit expected in exponent"},
		{`{"a":"abc`, 9, "end of input in string"},
		{strings.Repeat(`{"a":`, maxDepth+1), maxDepth * 5, "max nesting depth"},
	}
	for _, tt := range tests {
		var f Fields
		err := Parse([]byte(tt.in), &f)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Fatalf("%.40q: err = %v, want *SyntaxError", tt.in, err)
		}
		if se.Offset != tt.offset || !strings.Contains(se.Msg, tt.msg) {
			t.Errorf("%.40q: got %q at %d, want %q at %d", tt.in, se.Msg, se.Offset, tt.msg, tt.offset)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("offset %d", tt.offset)) {
			t.Errorf("error text %q lacks the offset", err)
		}
	}
}

func TestUnquote(t *testing.T) {
	t.Parallel()
	tests := []struct{ raw, want string }{
		{`plain`, "plain"},
		{`a\"b\\c\/d\b\f\n\r\t`, "a\"b\\c/d\b\f\n\r\t"},
		{`\u00e9\u4e2d`, "é中"},
		{`\ud83d\ude00`, "😀"},
		{`\ud83d`, "\uFFFD"},
		{`\ude00x`, "\uFFFDx"},
		{`\ud83dx`, "\uFFFDx"},
		{"caf\xc3\xa9", "café"},
		{"bad\xff", "bad\uFFFD"},
		{`\q`, "\uFFFD"},
		{`\`, "\uFFFD"},
		{`\u12`, "\uFFFD12"},
	}
	for _, tt := range tests {
		if got := Unquote([]byte(tt.raw)); got != tt.want {
			t.Errorf("Unquote(%q) = %q, want %q", tt.raw, got, tt.want)
		}
		if got := string(AppendUnquoted([]byte(">"), []byte(tt.raw))); got != ">"+tt.want {
			t.Errorf("AppendUnquoted(%q) = %q", tt.raw, got)
		}
	}
}

func TestParseZeroAllocs(t *testing.T) {
	var f Fields
	for _, in := range []string{chunkContent, chunkUsage, fullResponse, `{"mod\u0065l":"m"}`} {
		b := []byte(in)
		if a := testing.AllocsPerRun(100, func() {
			if err := Parse(b, &f); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("%.30q: %v allocs, want 0", in, a)
		}
	}
}

func TestUsageStateString(t *testing.T) {
	t.Parallel()
	if UsageAbsent.String() != "absent" || UsageNull.String() != "null" || UsagePresent.String() != "present" {
		t.Fatal("UsageState strings")
	}
}

// Long strings take plainRun's path: a quote, a backslash or a control
// character anywhere past its first words must still be found exactly, and
// validity must match encoding/json's.
func TestLongStringRuns(t *testing.T) {
	long := strings.Repeat("abcdefgh", 40) // 320 plain bytes
	request := `{"messages":[{"content":"` + long + `"}],"model":"m","stream":true}`
	cases := []string{
		request,
		`{"model":"` + long + `"}`,
		`{"model":"` + long + `\n` + long + `"}`,
		`{"model":"` + long + `\"` + long + `"}`,
		`{"model":"` + long + `\u00e9` + long + `"}`,
		`{"model":"` + long + "\x01" + long + `"}`,
		`{"model":"` + long[:100] + "\x1f" + `"}`,
		`{"model":"` + long + `\q"}`,
		`{"model":"` + long,
		`{"model":"` + long + `\`,
		`{"model":"` + long + `"`,
		`{"model":"` + strings.Repeat(long[:70]+`\n`, 50) + `"}`,
		`{"model":"` + strings.Repeat(long[:70]+`\"`, 50) + `\"}`,
		`{"model":"` + strings.Repeat(long[:70]+`\n`, 50) + "\x02" + `"}`,
	}
	for i := range 70 { // a control character at every offset around the word boundaries
		b := []byte(`{"model":"` + long[:140] + `"}`)
		b[10+i] = 0x07
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		var f Fields
		err := Parse([]byte(c), &f)
		if valid := json.Valid([]byte(c)); (err == nil) != valid {
			t.Errorf("Parse(%.40q...) = %v, json.Valid = %v", c, err, valid)
		}
		var r Request
		err = ParseRequest([]byte(c), &r)
		if valid := json.Valid([]byte(c)); (err == nil) != valid {
			t.Errorf("ParseRequest(%.40q...) = %v, json.Valid = %v", c, err, valid)
		}
		if err == nil && strings.HasPrefix(c, `{"model":"`+long+`"}`) && string(r.Model) != long {
			t.Errorf("model %.20q..., want the long string", r.Model)
		}
	}
	var r Request
	if err := ParseRequest([]byte(request), &r); err != nil || string(r.Model) != "m" || !r.Stream {
		t.Errorf("request after a long prompt: %+v, %v", r, err)
	}
}
