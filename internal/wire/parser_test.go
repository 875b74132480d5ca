package wire

import (
	"fmt"
	"strings"
	"testing"
)

// describe renders everything Parse reports, for comparisons.
func describe(f *Fields, err error) string {
	return fmt.Sprintf("err=%v id=%q model=%q object=%q usage=%v %+v choices=%d reasons=%q n=%d content=%v %q error=%v %q %q %q %q",
		err, f.ID, f.Model, f.Object, f.UsageState, f.Usage, f.Choices, f.Reasons(), f.NumFinishReasons,
		f.HasContent, f.Content, f.Error.Present, f.Error.Message, f.Error.Type, f.Error.Code, f.Error.Param)
}

func TestParserMatchesParse(t *testing.T) {
	t.Parallel()
	stream := []string{
		chunkRole,
		chunkContent,
		chunkContent,
		chunkFinish,
		chunkUsage,
		`{"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"delta":{"content":"x"}}]}`,
		`{"id":"c1","object":"chat.completion.chunk","model":"m",}`,
		`{"id":"c1","object":"chat.completion.chunk","model":"m","choices"`,
		`{"id":"c1","object":"chat.completion.chunk","model":"m","choices":[],"id":"c2"}`,
		`{"id":"c2","created":1,"choices":[]}`,
		`{"id":"c2","created":12,"choices":[]}`,
		`{"id":"c2","created":1,"choices":[]}`,
		`{"id":"c2","created":1,"choices":[]} x`,
		`{"id":"c2","created":1,"usage":{"prompt_tokens":1},"choices":[]}`,
		`{"choices":[{"delta":{"content":"a"}}]}`,
		`{"choices":[{"delta":{"content":"b"}}]}`,
		`{"choices"`,
		`{"usage":null,"choices":[]}`,
		`{"error":{"message":"overloaded"},"choices":[]}`,
	}
	var ps Parser
	for i, in := range stream {
		var a, b Fields
		errA := Parse([]byte(in), &a)
		errB := ps.Parse([]byte(in), &b)
		if da, db := describe(&a, errA), describe(&b, errB); da != db {
			t.Fatalf("chunk %d %q:\n Parse  %s\n Parser %s", i, in, da, db)
		}
	}
	ps.Reset()
	if len(ps.prefix) != 0 || len(ps.tmpl) != 0 || ps.tf.Choices != 0 || ps.first || ps.hasID {
		t.Fatal("Reset kept cached state")
	}
	// A parser reset after one stream parses the next as a fresh one would, and keeps
	// its buffers unless they grew huge.
	var fresh Parser
	for i, in := range stream {
		var a, b Fields
		errA := fresh.Parse([]byte(in), &a)
		errB := ps.Parse([]byte(in), &b)
		if da, db := describe(&a, errA), describe(&b, errB); da != db {
			t.Fatalf("after Reset, chunk %d %q:\n fresh %s\n reset %s", i, in, da, db)
		}
	}
	huge := `{"id":"` + strings.Repeat("h", 70<<10) + `","choices":[{"delta":{"content":"x"}}]}`
	var f Fields
	if err := ps.Parse([]byte(huge), &f); err != nil {
		t.Fatal(err)
	}
	if cap(ps.prefix) <= 64<<10 && cap(ps.tmpl) <= 64<<10 {
		t.Fatal("the huge chunk was not cached; the test shows nothing")
	}
	ps.Reset()
	if cap(ps.prefix) > 64<<10 || cap(ps.tmpl) > 64<<10 {
		t.Errorf("Reset kept buffers of %d and %d bytes", cap(ps.prefix), cap(ps.tmpl))
	}
}

func TestParserTemplate(t *testing.T) {
	t.Parallel()
	const pre = `{"id":"c","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":"`
	const suf = `"},"logprobs":null,"finish_reason":null}],"usage":null}`
	const sufFinish = `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}`
	stream := []string{
		pre + "Hello" + suf,
		pre + " world" + suf,  // template hit
		pre + "" + suf,        // empty content: no content
		pre + `a"b\` + suf,    // escapes
		pre + `ab\` + suf,     // escaped closing quote: invalid
		pre + `a"b` + suf,     // a raw quote: invalid
		pre + "a\x01b" + suf,  // control character: invalid
		pre + `é` + suf,       // unicode escape
		pre + "x" + sufFinish, // new template with a finish reason and usage
		pre + "longer text" + sufFinish,
		pre + "" + sufFinish,         // empty content, HasContent from the finish reason
		pre + "y" + suf[:len(suf)-1], // truncated
		`{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}`,
		`{"choices":[{"delta":{"content":"c"}},{"delta":{"content":"b"}}]}`,
		`{"choices":[{"delta":{"content":"c"}},{"delta":{"content":""}}]}`,
		`{"choices":[{"delta":{"content":"d","content":"e"}}]}`,
		`{"choices":[{"delta":{"content":"f","content":"e"}}]}`,
		`{"choices":[{"text":"g"}]}`,
		`{"error":{"message":"boom"},"choices":[{"delta":{"content":"z"}}]}`,
		`{"error":{"message":"boom"},"choices":[{"delta":{"content":"zz"}}]}`,
	}
	var ps Parser
	for i, in := range stream {
		var a, b Fields
		errA := Parse([]byte(in), &a)
		errB := ps.Parse([]byte(in), &b)
		if da, db := describe(&a, errA), describe(&b, errB); da != db {
			t.Fatalf("chunk %d %q:\n Parse  %s\n Parser %s", i, in, da, db)
		}
	}
}

func TestParserSkipsPrefix(t *testing.T) {
	var ps Parser
	var f Fields
	if err := ps.Parse([]byte(chunkContent), &f); err != nil {
		t.Fatal(err)
	}
	if want := len(`{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1717000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1",`); len(ps.prefix) != want {
		t.Fatalf("cached prefix %d bytes, want %d: %q", len(ps.prefix), want, ps.prefix)
	}
	b := []byte(chunkContent)
	if a := testing.AllocsPerRun(100, func() { _ = ps.Parse(b, &f) }); a != 0 {
		t.Fatalf("%v allocs", a)
	}
}

// FuzzParser checks that a Parser fed three chunks in a row reports for
// each exactly what Parse does, whatever its caches hold.
func FuzzParser(f *testing.F) {
	other := strings.Replace(chunkContent, `" world"`, `"!"`, 1)
	f.Add([]byte(chunkContent), []byte(other), []byte(chunkFinish))
	f.Add([]byte(chunkContent), []byte(chunkContent), []byte(other))
	f.Add([]byte(`{"a":1,"choices":[]}`), []byte(`{"a":12,"choices":[]}`), []byte(`{"a":1,"choices":[]}`))
	f.Add([]byte(`{"id":"x","choices":[]}`), []byte(`{"id":"x",}`), []byte(`{"id":"x","choices":[1]}`))
	f.Add([]byte(chunkUsage), []byte(chunkUsage), []byte(chunkRole))
	f.Add([]byte(`{"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]}`),
		[]byte(`{"choices":[{"delta":{"content":""},"finish_reason":"stop"}]}`),
		[]byte(`{"choices":[{"delta":{"content":"\u00e9\\"},"finish_reason":"stop"}]}`))
	f.Fuzz(func(t *testing.T, c1, c2, c3 []byte) {
		var ps Parser
		for _, in := range [][]byte{c1, c2, c3} {
			var a, b Fields
			errA := Parse(in, &a)
			errB := ps.Parse(in, &b)
			if da, db := describe(&a, errA), describe(&b, errB); da != db {
				t.Fatalf("chunks %q %q %q, at %q:\n Parse  %s\n Parser %s", c1, c2, c3, in, da, db)
			}
		}
	})
}
