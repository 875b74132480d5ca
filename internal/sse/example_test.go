package sse_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/infermesh/infermesh/internal/sse"
)

func ExampleScanner() {
	stream := ": keep-alive\r\n\r\n" +
		"event: message\r\ndata: {\"a\":1}\r\n\r\n" +
		"data: line one\ndata:line two\n\n" +
		"data: [DONE]\n\n"
	s := sse.NewScanner(strings.NewReader(stream), sse.Options{})
	for s.Next() {
		ev := s.Event()
		if ev.Done() {
			fmt.Println("done")
			break
		}
		fmt.Printf("%s %q\n", ev.Name, ev.Data)
	}
	fmt.Println("err:", s.Err())
	// Output:
	// message "{\"a\":1}"
	//  "line one\nline two"
	// done
	// err: <nil>
}

// A stream cut in the middle of an event is an error that says how far it got.
func ExampleStreamError() {
	s := sse.NewScanner(strings.NewReader("data: {\"n\":1}\n\ndata: {\"n\":"), sse.Options{})
	for s.Next() {
		fmt.Printf("%s\n", s.Event().Data)
	}
	err := s.Err()
	fmt.Println(errors.Is(err, io.ErrUnexpectedEOF))
	fmt.Println(err)
	// Output:
	// {"n":1}
	// true
	// sse: stream ended in the middle of an event (11 bytes pending) after 1 events and 26 bytes read: unexpected EOF
}

// With EmitEmpty, a proxy forwards every block, keep-alives included,
// byte for byte.
func ExampleEvent_raw() {
	stream := ": ping\n\ndata: x\r\n\r\n"
	s := sse.NewScanner(strings.NewReader(stream), sse.Options{EmitEmpty: true})
	var out strings.Builder
	for s.Next() {
		out.Write(s.Event().Raw)
	}
	fmt.Println(out.String() == stream)
	// Output: true
}
