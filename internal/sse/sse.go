package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// DefaultMaxEventSize is the event size limit used when [Options.MaxEventSize] is zero.
const DefaultMaxEventSize = 1 << 20

// initialBufferSize is the first buffer allocated; it grows by doubling up to the limit.
// It holds a few events of an LLM stream (a chunk is a few hundred bytes): an open
// stream keeps it for its whole life, under net/http's own 4 KiB reader.
const initialBufferSize = 1024

// maxEmptyReads is how many consecutive (0, nil) reads are tolerated, as bufio does.
const maxEmptyReads = 100

// ErrEventTooLarge is wrapped by the [*StreamError] returned when one event is
// larger than [Options.MaxEventSize].
var ErrEventTooLarge = errors.New("sse: event too large")

// Options configure a [Scanner]. The zero value is usable.
type Options struct {
	// MaxEventSize bounds the bytes of one event as received: its field lines,
	// comments and line endings, including the blank line that ends it. Zero
	// means DefaultMaxEventSize (1 MiB); negative is treated as zero. The
	// scanner's buffer never grows beyond it.
	MaxEventSize int

	// EmitEmpty makes Next also yield blocks that carry no data field, such as a
	// comment-only keep-alive (": ping"), with Event.HasData false. A proxy sets
	// it so that it can forward keep-alives at once. When false (the default),
	// such blocks are skipped as the specification says and their bytes belong
	// to no event's Raw.
	EmitEmpty bool
}

// Event is one dispatched Server-Sent Event. Its byte slices point into the
// scanner's buffer and are valid until the next call to [Scanner.Next].
type Event struct {
	// Name is the value of the last "event" field; nil when absent or empty,
	// which means the default event type "message".
	Name []byte
	// Data is the event's data: the values of its "data" fields joined by '\n'.
	Data []byte
	// ID is the value of the last "id" field (an id containing NUL is ignored).
	ID []byte
	// HasData reports whether the event had at least one "data" field; an event
	// with an empty data field ("data:") has HasData true and an empty Data.
	HasData bool
	// HasID reports whether the event had an "id" field (an empty id resets
	// the last event ID).
	HasID bool
	// Retry is the reconnection time in milliseconds from a valid "retry"
	// field, or -1 when there was none.
	Retry int64
	// Raw is every byte consumed since the end of the previous event up to and
	// including the blank line that ends this one. Writing the Raw of each
	// event (with Options.EmitEmpty) reproduces the stream byte for byte, except
	// for a trailing partial event.
	Raw []byte
}

// Done reports whether the event's data is the OpenAI end-of-stream marker "[DONE]".
func (e *Event) Done() bool { return string(e.Data) == "[DONE]" }

// StreamError reports a stream that did not end cleanly: it died in the middle
// of an event, the reader failed, or an event was too large. It unwraps to Err,
// so errors.Is(err, io.ErrUnexpectedEOF) tells a truncated stream from a
// clean one (for which the scanner reports no error at all).
type StreamError struct {
	// Events is the number of events delivered before the failure.
	Events int64
	// Bytes is the number of bytes read from the reader.
	Bytes int64
	// Pending is the number of bytes of the unfinished event that was dropped.
	Pending int
	// Limit is the MaxEventSize in force (set when Err is ErrEventTooLarge).
	Limit int
	// Err is io.ErrUnexpectedEOF, ErrEventTooLarge or the reader's error.
	Err error
}

// Error implements error.
func (e *StreamError) Error() string {
	switch {
	case errors.Is(e.Err, ErrEventTooLarge):
		return fmt.Sprintf("sse: event exceeds the %d-byte limit (MaxEventSize) after %d events and %d bytes read",
			e.Limit, e.Events, e.Bytes)
	case e.Err == io.ErrUnexpectedEOF:
		return fmt.Sprintf("sse: stream ended in the middle of an event (%d bytes pending) after %d events and %d bytes read: %v",
			e.Pending, e.Events, e.Bytes, e.Err)
	default:
		return fmt.Sprintf("sse: read failed after %d events and %d bytes read (%d bytes pending): %v",
			e.Events, e.Bytes, e.Pending, e.Err)
	}
}

// Unwrap returns Err.
func (e *StreamError) Unwrap() error { return e.Err }

// Scanner reads Server-Sent Events from an io.Reader. It is not safe for
// concurrent use.
type Scanner struct {
	r         io.Reader
	max       int
	emitEmpty bool

	buf   []byte
	start int // first byte of the pending block (the next event's Raw)
	pos   int // scan position: first byte not yet consumed as a line
	end   int // end of valid data in buf

	rerr   error // the reader's error (io.EOF included), sticky
	final  error // the error Err reports
	done   bool
	skipLF bool // a CR ended the previous line at the end of the buffer: drop one LF
	// scanned is an absolute index >= pos: buf[pos:scanned] holds no CR or LF,
	// so the search for the end of a long line resumes there after a read.
	scanned int
	bomOK   bool // the byte order mark check has been done

	events int64
	nbytes int64

	ev Event

	// State of the pending block. Offsets are absolute indexes into buf and are
	// shifted when the buffer is compacted; -1 means absent.
	lines            int // non-blank lines seen (fields and comments)
	nameOff, nameEnd int
	idOff, idEnd     int
	dataOff, dataEnd int
	dataLines        int
	hasID            bool
	retry            int64
	data             []byte // joined data when an event has two or more data lines
}

// NewScanner returns a Scanner that reads from r.
func NewScanner(r io.Reader, o Options) *Scanner {
	s := &Scanner{}
	s.init(r, o)
	return s
}

func (s *Scanner) init(r io.Reader, o Options) {
	s.max = o.MaxEventSize
	if s.max <= 0 {
		s.max = DefaultMaxEventSize
	}
	s.emitEmpty = o.EmitEmpty
	if len(s.buf) > s.max {
		s.buf = nil // a reused buffer must not let an event past this limit
	}
	s.Reset(r)
}

// maxPooledBuffer bounds the buffers kept for reuse: a scanner that grew for one
// huge event gives its buffer back to the garbage collector rather than to the
// next stream.
const maxPooledBuffer = 64 << 10

var pool sync.Pool // *Scanner

// Get returns a Scanner that reads from r, reusing the buffers of one given back
// with [Scanner.Release]: a client that scans a stream per request then allocates
// no buffer per request.
func Get(r io.Reader, o Options) *Scanner {
	s, _ := pool.Get().(*Scanner)
	if s == nil {
		s = &Scanner{}
	}
	s.init(r, o)
	return s
}

// Release gives s back for reuse by [Get]. Neither s nor the byte slices of its
// events may be used afterwards.
func (s *Scanner) Release() {
	if cap(s.buf) > maxPooledBuffer || cap(s.data) > maxPooledBuffer {
		return
	}
	s.Reset(nil)
	s.data = s.data[:0]
	pool.Put(s)
}

// Reset makes the scanner read a new stream from r, keeping its buffers and options.
func (s *Scanner) Reset(r io.Reader) {
	s.r = r
	s.start, s.pos, s.end, s.scanned = 0, 0, 0, 0
	s.rerr, s.final = nil, nil
	s.done, s.skipLF, s.bomOK = false, false, false
	s.events, s.nbytes = 0, 0
	s.ev = Event{Retry: -1}
	s.resetBlock()
}

// Events returns the number of events delivered so far.
func (s *Scanner) Events() int64 { return s.events }

// BytesRead returns the number of bytes read from the reader so far.
func (s *Scanner) BytesRead() int64 { return s.nbytes }

// Event returns the event found by the last successful call to Next. The event
// and its slices are valid until the next call to Next.
func (s *Scanner) Event() *Event { return &s.ev }

// Err returns the error that stopped the scanner, or nil when the stream ended
// cleanly (io.EOF at an event boundary). A non-nil error is a *StreamError.
func (s *Scanner) Err() error { return s.final }

func (s *Scanner) resetBlock() {
	s.lines = 0
	s.nameOff, s.nameEnd = -1, -1
	s.idOff, s.idEnd = -1, -1
	s.dataOff, s.dataEnd = -1, -1
	s.dataLines = 0
	s.hasID = false
	s.retry = -1
}

// Next advances to the next event, which Event then returns. It returns false
// at the end of the stream or on an error (see Err).
func (s *Scanner) Next() bool {
	if s.done {
		return false
	}
	for {
		for {
			ls, le, next, ok := s.line()
			if !ok {
				break
			}
			s.pos = next
			if ls == le {
				if s.dispatch(next) {
					return true
				}
				continue
			}
			s.field(ls, le)
		}
		if s.final != nil {
			s.done = true
			return false
		}
		if s.rerr != nil {
			return s.finish()
		}
		s.fill()
	}
}

// line finds the next complete line at s.pos: its content [ls, le) and the
// index after its terminator.
func (s *Scanner) line() (ls, le, next int, ok bool) {
	if s.skipLF {
		if s.pos == s.end {
			return 0, 0, 0, false
		}
		if s.buf[s.pos] == '\n' {
			s.pos++
		}
		s.skipLF = false
	}
	if !s.bomOK {
		b := s.buf[s.pos:s.end]
		if len(b) < 3 && s.rerr == nil && bytes.HasPrefix([]byte("\xEF\xBB\xBF"), b) {
			return 0, 0, 0, false
		}
		if bytes.HasPrefix(b, []byte("\xEF\xBB\xBF")) {
			s.pos += 3
		}
		s.bomOK = true
	}
	b := s.buf[s.pos:s.end]
	from := max(s.scanned-s.pos, 0)
	seg := b
	i := bytes.IndexByte(b[from:], '\n')
	if i >= 0 {
		i += from
		seg = b[:i]
	}
	if j := bytes.IndexByte(seg[from:], '\r'); j >= 0 {
		j += from
		switch {
		case j+1 < len(b) && b[j+1] == '\n':
			return s.pos, s.pos + j, s.pos + j + 2, true
		case j+1 < len(b) || s.rerr != nil:
			return s.pos, s.pos + j, s.pos + j + 1, true
		default:
			// The CR is the last byte buffered: it ends the line now, and an LF
			// that may follow in the next read belongs to it.
			s.skipLF = true
			return s.pos, s.pos + j, s.pos + j + 1, true
		}
	}
	if i >= 0 {
		return s.pos, s.pos + i, s.pos + i + 1, true
	}
	s.scanned = s.end
	return 0, 0, 0, false
}

// field processes one non-blank line [ls, le).
func (s *Scanner) field(ls, le int) {
	s.lines++
	line := s.buf[ls:le]
	if line[0] == ':' {
		return // comment
	}
	name, vs := line, le
	if c := bytes.IndexByte(line, ':'); c >= 0 {
		name = line[:c]
		vs = ls + c + 1
		if vs < le && s.buf[vs] == ' ' {
			vs++
		}
	}
	switch string(name) {
	case "data":
		switch s.dataLines {
		case 0:
			s.dataOff, s.dataEnd = vs, le
		case 1:
			s.data = append(s.data[:0], s.buf[s.dataOff:s.dataEnd]...)
			fallthrough
		default:
			s.data = append(s.data, '\n')
			s.data = append(s.data, s.buf[vs:le]...)
		}
		s.dataLines++
	case "event":
		s.nameOff, s.nameEnd = vs, le
	case "id":
		if bytes.IndexByte(s.buf[vs:le], 0) < 0 {
			s.idOff, s.idEnd = vs, le
			s.hasID = true
		}
	case "retry":
		v := s.buf[vs:le]
		if len(v) == 0 || len(v) > 18 {
			return
		}
		var n int64
		for _, c := range v {
			if c < '0' || c > '9' {
				return
			}
			n = n*10 + int64(c-'0')
		}
		s.retry = n
	}
}

// dispatch ends the pending block at a blank line; next is the index after it.
// It reports whether an event is ready.
func (s *Scanner) dispatch(next int) bool {
	if s.dataLines == 0 {
		switch {
		case s.emitEmpty && s.lines > 0:
			s.setEvent(next)
			return true
		case !s.emitEmpty:
			s.start = next // skipped blocks belong to no Raw
		}
		s.resetBlock()
		return false
	}
	s.setEvent(next)
	return true
}

func (s *Scanner) setEvent(next int) {
	ev := &s.ev
	ev.Name = nil
	if s.nameOff >= 0 && s.nameEnd > s.nameOff {
		ev.Name = s.buf[s.nameOff:s.nameEnd]
	}
	ev.ID = nil
	if s.idOff >= 0 {
		ev.ID = s.buf[s.idOff:s.idEnd]
	}
	ev.HasID = s.hasID
	switch s.dataLines {
	case 0:
		ev.Data = nil
	case 1:
		ev.Data = s.buf[s.dataOff:s.dataEnd]
	default:
		ev.Data = s.data
	}
	ev.HasData = s.dataLines > 0
	ev.Retry = s.retry
	ev.Raw = s.buf[s.start:next]
	s.start = next
	s.events++
	s.resetBlock()
}

// fill compacts the buffer, grows it if it is full, and reads once.
func (s *Scanner) fill() {
	if s.start > 0 {
		d := s.start
		copy(s.buf, s.buf[d:s.end])
		s.end -= d
		s.pos -= d
		s.scanned = max(s.scanned-d, 0)
		s.start = 0
		if s.nameOff >= 0 {
			s.nameOff -= d
			s.nameEnd -= d
		}
		if s.idOff >= 0 {
			s.idOff -= d
			s.idEnd -= d
		}
		if s.dataOff >= 0 {
			s.dataOff -= d
			s.dataEnd -= d
		}
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= s.max {
			s.final = &StreamError{Events: s.events, Bytes: s.nbytes, Pending: s.end - s.start,
				Limit: s.max, Err: ErrEventTooLarge}
			return
		}
		n := max(2*len(s.buf), initialBufferSize)
		n = min(n, s.max)
		nb := make([]byte, n)
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for range maxEmptyReads {
		n, err := s.r.Read(s.buf[s.end:])
		if n < 0 || n > len(s.buf)-s.end {
			s.rerr = fmt.Errorf("sse: reader returned an invalid count %d", n)
			return
		}
		s.end += n
		s.nbytes += int64(n)
		if err != nil {
			s.rerr = err
			return
		}
		if n > 0 {
			return
		}
	}
	s.rerr = io.ErrNoProgress
}

// finish handles the end of input: every complete line has been processed.
func (s *Scanner) finish() bool {
	s.done = true
	pending := s.end - s.start
	if s.rerr != io.EOF {
		s.final = &StreamError{Events: s.events, Bytes: s.nbytes, Pending: pending, Err: s.rerr}
		return false
	}
	if s.pos < s.end {
		// EOF in the middle of a line.
		s.final = &StreamError{Events: s.events, Bytes: s.nbytes, Pending: pending, Err: io.ErrUnexpectedEOF}
		return false
	}
	if s.dataLines > 0 {
		// Every line is complete but the blank line that ends the event is
		// missing. Line-oriented clients accept such a final event (some servers
		// end with "data: [DONE]\n"), so it is delivered; the stream then ends cleanly.
		s.done = false
		s.setEvent(s.end)
		s.rerr = io.EOF
		return true
	}
	return false
}
