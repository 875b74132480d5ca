package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// reference is a direct, allocation-happy reading of the specification over a
// whole input, with this package's end-of-stream rules.
func reference(in string) (events []got, truncated bool) {
	in = strings.TrimPrefix(in, "\xEF\xBB\xBF")
	var name, id, data string
	hasID, nData := false, 0
	retry := int64(-1)
	for len(in) > 0 {
		i := strings.IndexAny(in, "\r\n")
		if i < 0 {
			return events, true
		}
		line := in[:i]
		if in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
			in = in[i+2:]
		} else {
			in = in[i+1:]
		}
		if line == "" {
			if nData > 0 {
				events = append(events, got{name, data, id, true, retry})
			}
			name, id, data, hasID, nData, retry = "", "", "", false, 0, -1
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "data":
			if nData > 0 {
				data += "\n"
			}
			data += value
			nData++
		case "event":
			name = value
		case "id":
			if !strings.Contains(value, "\x00") {
				id, hasID = value, true
			}
		case "retry":
			if n, err := strconv.ParseUint(value, 10, 63); err == nil && len(value) <= 18 && !strings.ContainsAny(value, "+-") {
				retry = int64(n)
			}
		}
	}
	_ = hasID
	if nData > 0 {
		events = append(events, got{name, data, id, true, retry})
	}
	return events, false
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		"data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
		"data: a\r\n\r\ndata: b\r\rdata: c\n\n",
		": ping\n\nevent: error\ndata: {\"error\":{}}\n\n",
		"id: 1\nretry: 100\ndata\n\ndata: [DONE]\n",
		"\xEF\xBB\xBFdata: x\r",
		"data: partial",
		"data: a\ndata: b\n\n\n\n",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		want, truncated := reference(string(in))
		for _, emit := range []bool{false, true} {
			s := NewScanner(&chunkReader{data: in, n: int(chunk) + 1}, Options{EmitEmpty: emit})
			var evs []got
			var raw []byte
			for i := 0; s.Next(); i++ {
				if i > len(in)+1 {
					t.Fatal("more events than input bytes")
				}
				e := s.Event()
				raw = append(raw, e.Raw...)
				if !e.HasData {
					if !emit {
						t.Fatal("data-less block without EmitEmpty")
					}
					continue
				}
				evs = append(evs, got{string(e.Name), string(e.Data), string(e.ID), e.HasData, e.Retry})
			}
			if emit && !bytes.HasPrefix(in, raw) {
				t.Fatalf("Raw concatenation is not a prefix of the input:\n raw %q\n in  %q", raw, in)
			}
			if fmt.Sprint(evs) != fmt.Sprint(want) {
				t.Fatalf("events differ (emit=%v chunk=%d):\n got %v\nwant %v", emit, chunk, evs, want)
			}
			err := s.Err()
			if truncated != errors.Is(err, io.ErrUnexpectedEOF) || (!truncated && err != nil) {
				t.Fatalf("err = %v, want truncated=%v", err, truncated)
			}
			if s.BytesRead() != int64(len(in)) {
				t.Fatalf("BytesRead = %d, want %d", s.BytesRead(), len(in))
			}
		}
	})
}
