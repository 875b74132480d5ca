package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// got is a comparable copy of an event.
type got struct {
	Name, Data, ID string
	HasData        bool
	Retry          int64
}

func collect(t testing.TB, r io.Reader, o Options) ([]got, []byte, error) {
	t.Helper()
	s := NewScanner(r, o)
	var out []got
	var raw []byte
	for i := 0; s.Next(); i++ {
		if i > 100000 {
			t.Fatal("too many events")
		}
		e := s.Event()
		out = append(out, got{string(e.Name), string(e.Data), string(e.ID), e.HasData, e.Retry})
		raw = append(raw, e.Raw...)
	}
	return out, raw, s.Err()
}

func TestScannerParsing(t *testing.T) {
	t.Parallel()
	d := func(data string) got { return got{Data: data, HasData: true, Retry: -1} }
	tests := []struct {
		name string
		in   string
		want []got
	}{
		{"lf", "data: a\n\ndata: b\n\n", []got{d("a"), d("b")}},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", []got{d("a"), d("b")}},
		{"cr", "data: a\r\rdata: b\r\r", []got{d("a"), d("b")}},
		{"mixed", "data: a\r\n\ndata: b\r\r\ndata: c\n\r", []got{d("a"), d("b"), d("c")}},
		{"cr joins lines", "data: b\rdata: c\r\r", []got{d("b\nc")}},
		{"no space", "data:a\n\n", []got{d("a")}},
		{"two spaces", "data:  a\n\n", []got{d(" a")}},
		{"multi line", "data: a\ndata:b\ndata\n\n", []got{d("a\nb\n")}},
		{"empty data", "data:\n\n", []got{d("")}},
		{"comments", ": ping\n\n: x\ndata: a\n: y\n\n", []got{d("a")}},
		{"event name", "event: error\ndata: {}\n\n", []got{{Name: "error", Data: "{}", HasData: true, Retry: -1}}},
		{"empty name", "event:\ndata: x\n\n", []got{d("x")}},
		{"event without data is skipped", "event: ping\n\ndata: x\n\n", []got{d("x")}},
		{"id and retry", "id: 7\nretry: 1500\ndata: x\n\n", []got{{Data: "x", ID: "7", HasData: true, Retry: 1500}}},
		{"bad retry", "retry: 1s\ndata: x\n\n", []got{d("x")}},
		{"id with nul ignored", "id: a\x00b\ndata: x\n\n", []got{d("x")}},
		{"unknown field", "foo: bar\ndata: x\n\n", []got{d("x")}},
		{"bom", "\xEF\xBB\xBFdata: x\n\n", []got{d("x")}},
		{"done", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []got{d(`{"a":1}`), d("[DONE]")}},
		{"final event without blank line", "data: a\n\ndata: [DONE]\n", []got{d("a"), d("[DONE]")}},
		{"final cr", "data: a\r", []got{d("a")}},
		{"leading blank lines", "\n\n\ndata: a\n\n", []got{d("a")}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, mode := range []string{"whole", "onebyte", "half"} {
				var r io.Reader = strings.NewReader(tt.in)
				switch mode {
				case "onebyte":
					r = iotest.OneByteReader(r)
				case "half":
					r = iotest.HalfReader(r)
				}
				out, _, err := collect(t, r, Options{})
				if err != nil {
					t.Fatalf("%s: err = %v", mode, err)
				}
				if fmt.Sprint(out) != fmt.Sprint(tt.want) {
					t.Fatalf("%s:\n got %v\nwant %v", mode, out, tt.want)
				}
			}
		})
	}
}

func TestDone(t *testing.T) {
	t.Parallel()
	s := NewScanner(strings.NewReader("data: [DONE]\n\ndata: [DONE] \n\n"), Options{})
	if !s.Next() || !s.Event().Done() {
		t.Fatal("first event should be [DONE]")
	}
	if !s.Next() || s.Event().Done() {
		t.Fatal("second event has a trailing space and is not [DONE]")
	}
}

func TestRawReproducesStream(t *testing.T) {
	t.Parallel()
	in := "\xEF\xBB\xBF: hello\n\nevent: x\ndata: a\r\n\r\n\n\ndata: b\rdata: c\r\r\n: ping\n\nid: 1\n\ndata: [DONE]\n\n"
	for _, r := range []io.Reader{strings.NewReader(in), iotest.OneByteReader(strings.NewReader(in))} {
		out, raw, err := collect(t, r, Options{EmitEmpty: true})
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != in {
			t.Fatalf("raw concatenation differs:\n got %q\nwant %q", raw, in)
		}
		// hello comment, x/a, b\nc, ping comment, id-only block, [DONE]
		if len(out) != 6 {
			t.Fatalf("got %d blocks, want 6: %v", len(out), out)
		}
		if out[0].HasData || !out[1].HasData || out[4].ID != "1" || out[4].HasData {
			t.Fatalf("unexpected blocks: %v", out)
		}
	}
}

func TestRawWithoutEmitEmpty(t *testing.T) {
	t.Parallel()
	s := NewScanner(strings.NewReader(": ping\n\ndata: a\n\n"), Options{})
	if !s.Next() {
		t.Fatal(s.Err())
	}
	if got := string(s.Event().Raw); got != "data: a\n\n" {
		t.Fatalf("Raw = %q", got)
	}
}

func TestTruncated(t *testing.T) {
	t.Parallel()
	in := "data: one\n\ndata: two\n\ndata: {\"partial"
	s := NewScanner(iotest.HalfReader(strings.NewReader(in)), Options{})
	n := 0
	for s.Next() {
		n++
	}
	err := s.Err()
	if n != 2 {
		t.Fatalf("delivered %d events, want 2", n)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	var se *StreamError
	if !errors.As(err, &se) || se.Events != 2 || se.Bytes != int64(len(in)) || se.Pending != len("data: {\"partial") {
		t.Fatalf("StreamError = %+v", se)
	}
	for _, want := range []string{"2 events", fmt.Sprintf("%d bytes read", len(in))} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	if s.Next() {
		t.Fatal("Next after error returned true")
	}
}

func TestCleanEOF(t *testing.T) {
	t.Parallel()
	s := NewScanner(strings.NewReader("data: a\n\n: bye\n"), Options{})
	for s.Next() {
	}
	if err := s.Err(); err != nil {
		t.Fatalf("err = %v, want nil", err)
	}
	if s.Events() != 1 || s.BytesRead() != int64(len("data: a\n\n: bye\n")) {
		t.Fatalf("Events %d BytesRead %d", s.Events(), s.BytesRead())
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReaderError(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	s := NewScanner(&failingReader{data: []byte("data: a\n\ndata: b"), err: boom}, Options{})
	n := 0
	for s.Next() {
		n++
	}
	err := s.Err()
	if n != 1 || !errors.Is(err, boom) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if !strings.Contains(err.Error(), "after 1 events and 16 bytes read") {
		t.Fatalf("error %q lacks counts", err)
	}
}

func TestNoProgress(t *testing.T) {
	t.Parallel()
	s := NewScanner(&failingReader{err: nil}, Options{})
	if s.Next() || !errors.Is(s.Err(), io.ErrNoProgress) {
		t.Fatalf("err = %v", s.Err())
	}
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	big := "data: " + strings.Repeat("x", 200) + "\n\n"
	s := NewScanner(strings.NewReader("data: ok\n\n"+big), Options{MaxEventSize: 100})
	if !s.Next() || string(s.Event().Data) != "ok" {
		t.Fatal("small event not delivered")
	}
	if s.Next() {
		t.Fatal("oversized event delivered")
	}
	err := s.Err()
	if !errors.Is(err, ErrEventTooLarge) || !strings.Contains(err.Error(), "100-byte limit (MaxEventSize)") {
		t.Fatalf("err = %v", err)
	}
	// An event of exactly the limit fits.
	exact := "data: " + strings.Repeat("y", 92) + "\n\n"
	s = NewScanner(iotest.OneByteReader(strings.NewReader(exact+exact)), Options{MaxEventSize: len(exact)})
	n := 0
	for s.Next() {
		n++
	}
	if n != 2 || s.Err() != nil {
		t.Fatalf("n=%d err=%v", n, s.Err())
	}
}

func TestLargeEventGrowsBuffer(t *testing.T) {
	t.Parallel()
	payload := strings.Repeat("z", 100000)
	s := NewScanner(strings.NewReader("data: "+payload+"\n\ndata: "+payload+"\ndata: x\n\n"), Options{})
	if !s.Next() || string(s.Event().Data) != payload {
		t.Fatal("first large event")
	}
	if !s.Next() || string(s.Event().Data) != payload+"\nx" {
		t.Fatal("second large event")
	}
	if s.Next() || s.Err() != nil {
		t.Fatal(s.Err())
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	s := NewScanner(strings.NewReader("data: a\n\ndata: b"), Options{})
	for s.Next() {
	}
	if s.Err() == nil {
		t.Fatal("want truncation error")
	}
	s.Reset(strings.NewReader("data: c\n\n"))
	if !s.Next() || string(s.Event().Data) != "c" || s.Events() != 1 {
		t.Fatal("Reset did not restart the scanner")
	}
}

// repeatReader yields the same chunk forever, one chunk per Read.
type repeatReader struct{ chunk []byte }

func (r *repeatReader) Read(p []byte) (int, error) { return copy(p, r.chunk), nil }

func TestZeroAllocsSteadyState(t *testing.T) {
	chunk := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: line1\ndata: line2\n\n")
	s := NewScanner(&repeatReader{chunk}, Options{})
	for range 100 {
		s.Next()
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if !s.Next() {
			t.Fatal(s.Err())
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs per event = %v, want 0", allocs)
	}
}

func TestStreamErrorMessage(t *testing.T) {
	t.Parallel()
	e := &StreamError{Events: 3, Bytes: 10, Pending: 4, Err: io.ErrUnexpectedEOF}
	if !strings.Contains(e.Error(), "4 bytes pending") {
		t.Fatal(e.Error())
	}
	var buf bytes.Buffer
	buf.WriteString(e.Error())
	if !bytes.Contains(buf.Bytes(), []byte("3 events")) {
		t.Fatal(e.Error())
	}
}

// A scanner given back with Release and taken again with Get reads its new
// stream from the start, under the new options: a buffer grown under a larger
// limit does not let an event past a smaller one.
func TestGetRelease(t *testing.T) {
	payload := strings.Repeat("q", 3000)
	s := Get(strings.NewReader("data: "+payload+"\n\ndata: half"), Options{EmitEmpty: true})
	if !s.Next() || string(s.Event().Data) != payload {
		t.Fatal("first stream")
	}
	s.Release()

	s = Get(strings.NewReader(": ping\n\ndata: b\n\n"), Options{})
	if !s.Next() || string(s.Event().Data) != "b" || s.Events() != 1 || s.BytesRead() != 17 {
		t.Fatalf("second stream: %q, events %d, bytes %d", s.Event().Data, s.Events(), s.BytesRead())
	}
	if s.Next() || s.Err() != nil {
		t.Fatalf("second stream end: %v", s.Err())
	}
	s.Release()

	for range 3 { // whichever scanner the pool hands out
		s = Get(strings.NewReader("data: "+payload+"\n\n"), Options{MaxEventSize: 100})
		if s.Next() || !errors.Is(s.Err(), ErrEventTooLarge) {
			t.Fatalf("an event over MaxEventSize passed a reused scanner: %v", s.Err())
		}
		s.Release()
	}

	// A scanner that grew past the bound is not kept.
	big := Get(strings.NewReader("data: "+strings.Repeat("z", 2*maxPooledBuffer)+"\n\n"), Options{})
	if !big.Next() {
		t.Fatal(big.Err())
	}
	big.Release()
	for range 3 {
		if s := Get(strings.NewReader(""), Options{}); s == big {
			t.Fatal("a scanner with an oversized buffer was pooled")
		}
	}
}
