package llmclient

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/infermesh/infermesh/internal/sse"
)

// eventSource yields a stream's events. Name, Data and Raw are valid until the next
// call to Next.
type eventSource interface {
	Next() bool
	Name() []byte // the event's "event:" field, if any
	Data() []byte // its data
	Raw() []byte  // its bytes as received, which the caller is given
	Err() error   // why Next returned false; nil for a clean end
}

// newEventSource reads a stream as its content type says: newline-delimited JSON for
// application/x-ndjson (and jsonl), server-sent events otherwise (text/event-stream, a
// missing content type, or anything else a server answered a stream request with).
func newEventSource(resp *http.Response, maxEvent int) eventSource {
	switch mediaType(resp.Header) {
	case "application/x-ndjson", "application/jsonl", "application/jsonlines":
		return &lines{r: bufio.NewReaderSize(resp.Body, 4096), max: maxEvent}
	}
	return &sseSource{sc: sse.NewScanner(resp.Body, sse.Options{MaxEventSize: maxEvent, EmitEmpty: true})}
}

type sseSource struct{ sc *sse.Scanner }

func (s *sseSource) Next() bool   { return s.sc.Next() }
func (s *sseSource) Name() []byte { return s.sc.Event().Name }
func (s *sseSource) Data() []byte { return s.sc.Event().Data }
func (s *sseSource) Raw() []byte  { return s.sc.Event().Raw }
func (s *sseSource) Err() error   { return s.sc.Err() }

// lines reads one JSON event per line, each at most max bytes.
type lines struct {
	r    *bufio.Reader
	max  int
	line []byte
	err  error
}

func (l *lines) Next() bool {
	if l.err != nil {
		return false
	}
	l.line = l.line[:0]
	for {
		chunk, err := l.r.ReadSlice('\n')
		if len(l.line)+len(chunk) > l.max {
			l.err = sse.ErrEventTooLarge
			return false
		}
		l.line = append(l.line, chunk...)
		switch {
		case err == nil:
			if len(bytes.TrimSpace(l.line)) == 0 {
				l.line = l.line[:0]
				continue // blank lines separate nothing
			}
			return true
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(bytes.TrimSpace(l.line)) > 0:
			l.err = io.ErrUnexpectedEOF // a last line without its newline is cut short
			return false
		default:
			if err != io.EOF {
				l.err = err
			} else {
				l.err = io.EOF
			}
			return false
		}
	}
}

func (l *lines) Name() []byte { return nil }
func (l *lines) Data() []byte { return bytes.TrimSpace(l.line) }
func (l *lines) Raw() []byte  { return l.line }
func (l *lines) Err() error {
	if l.err == io.EOF {
		return nil
	}
	return l.err
}
