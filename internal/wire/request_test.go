package wire

import (
	"encoding/json"
	"testing"
)

func TestParseRequest(t *testing.T) {
	cases := []struct {
		in    string
		want  Request
		model string
		bad   bool
	}{
		{in: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, model: "gpt-4o"},
		{in: `{"messages":[],"stream":true,"model":"m"}`, want: Request{Stream: true}, model: "m"},
		{in: `{"stream":true,"stream_options":{"include_usage":true}}`, want: Request{Stream: true, IncludeUsage: true, StreamOptions: true}},
		{in: `{"stream":false,"stream_options":{"include_usage":false,"x":[1,{"include_usage":true}]}}`, want: Request{StreamOptions: true}},
		{in: `{"stream_options":null,"stream":"yes"}`, want: Request{StreamOptions: true}},
		{in: ` {"m\u006fdel":"esc","str\u0065am":true} `, want: Request{Stream: true}, model: "esc"},
		{in: `{"model":"a","model":"b"}`, model: "b"},
		{in: `[1]`, bad: true},
		{in: `{"model":"a"`, bad: true},
		{in: `{"stream":tru}`, bad: true},
		{in: `{"model":"a"} x`, bad: true},
		{in: ``, bad: true},
	}
	for _, c := range cases {
		var r Request
		err := ParseRequest([]byte(c.in), &r)
		if c.bad {
			if _, ok := err.(*SyntaxError); !ok {
				t.Errorf("%s: err = %v, want a *SyntaxError", c.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if string(r.Model) != c.model {
			t.Errorf("%s: model %q, want %q", c.in, r.Model, c.model)
		}
		if r.Stream != c.want.Stream || r.IncludeUsage != c.want.IncludeUsage || r.StreamOptions != c.want.StreamOptions {
			t.Errorf("%s: got %+v, want %+v", c.in, r, c.want)
		}
	}
}

func TestParseRequestAllocs(t *testing.T) {
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}],"stream":true,"temperature":0.2}`)
	var r Request
	if n := testing.AllocsPerRun(100, func() { _ = ParseRequest(body, &r) }); n != 0 {
		t.Errorf("ParseRequest allocates %v times", n)
	}
}

// FuzzParseRequest checks ParseRequest against encoding/json on every input it
// accepts, and that it never panics.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","messages":[{"role":"user","content":"hi \"there\""}]}`,
		`{"stream_options":{},"stream":false}`, `{}`, `[]`, `{"model":1}`, `{"a":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		err := ParseRequest(data, &r)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		// A map, not a struct: encoding/json matches struct fields case-insensitively,
		// and OpenAI's API does not.
		var ref map[string]any
		if json.Unmarshal(data, &ref) != nil {
			return
		}
		if s, ok := ref["model"].(string); ok && Unquote(r.Model) != s {
			t.Fatalf("model %q, encoding/json %q", Unquote(r.Model), s)
		}
		if b, _ := ref["stream"].(bool); b != r.Stream {
			t.Fatalf("stream %v, encoding/json %v", r.Stream, ref["stream"])
		}
		so, _ := ref["stream_options"].(map[string]any)
		if iu, _ := so["include_usage"].(bool); iu != r.IncludeUsage {
			t.Fatalf("include_usage %v, encoding/json %v", r.IncludeUsage, so)
		}
	})
}
