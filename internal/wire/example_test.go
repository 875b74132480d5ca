package wire_test

import (
	"fmt"

	"github.com/infermesh/infermesh/internal/wire"
)

func ExampleParse() {
	var f wire.Fields
	chunks := []string{
		`{"id":"c1","model":"gpt-4o","choices":[{"delta":{"role":"assistant","content":""}}]}`,
		`{"id":"c1","model":"gpt-4o","choices":[{"delta":{"content":"Hi"}}]}`,
		`{"id":"c1","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`,
		`{"error":{"message":"Overloaded","type":"overloaded_error","code":529}}`,
		`{"id":`,
	}
	for _, c := range chunks {
		if err := wire.Parse([]byte(c), &f); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("model=%s choices=%d content=%v usage=%v in=%d out=%d error=%v %q %q\n",
			f.Model, f.Choices, f.HasContent, f.UsageState, f.Usage.InputTokens, f.Usage.OutputTokens,
			f.Error.Present, f.Error.Message, f.Error.Code)
	}
	// Output:
	// model=gpt-4o choices=1 content=false usage=absent in=0 out=0 error=false "" ""
	// model=gpt-4o choices=1 content=true usage=absent in=0 out=0 error=false "" ""
	// model=gpt-4o choices=0 content=false usage=present in=3 out=1 error=false "" ""
	// model= choices=-1 content=false usage=absent in=0 out=0 error=true "Overloaded" "529"
	// wire: unexpected end of input: missing object value at offset 6
}

// A Parser per stream skips what every chunk repeats.
func ExampleParser() {
	var p wire.Parser
	var f wire.Fields
	for _, c := range []string{
		`{"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hel"}}]}`,
		`{"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"lo \"you\""}}]}`,
		`{"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
	} {
		if err := p.Parse([]byte(c), &f); err != nil {
			panic(err)
		}
		fmt.Printf("%q %s\n", wire.Unquote(f.Content), f.Reasons())
	}
	// Output:
	// "Hel" []
	// "lo \"you\"" []
	// "" [stop]
}
