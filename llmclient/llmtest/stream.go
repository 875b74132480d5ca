package llmtest

import (
	"bytes"
	"net/http"
	"strings"
)

// A streamEvent is one event of a stream: its SSE event name (empty for chat and text
// completion chunks) and its JSON data, built when it is written so that a Responses event
// can carry its sequence number.
type streamEvent struct {
	name string
	data func(seq int) []byte
}

// fixedEvent is an unnamed event whose data does not depend on its place.
func fixedEvent(data []byte) streamEvent {
	return streamEvent{data: func(int) []byte { return data }}
}

// chunkError is the event that carries an error object in a chat or text completion stream:
// data {"error":{...}}.
func chunkError(e *apiError) streamEvent { return fixedEvent(bytes.TrimSpace(errorBody(e))) }

// A streamPlan is the sequence of events of one streamed answer, in four parts:
//
//	head      events that carry no output: the role chunk of a chat stream; response.created,
//	          .in_progress, .output_item.added (and .content_part.added) of a Responses stream
//	outputs   the events that carry output (content chunks, text or argument deltas); the first
//	          is the commit point
//	closing   events after the output that do not end the stream (Responses' .done events)
//	terminal  the events that end it: the finish and usage chunks, response.completed, ...
//
// and the ways the stream carries what a fault inserts.
type streamPlan struct {
	head     []streamEvent
	outputs  int
	output   func(i int) streamEvent
	closing  []streamEvent
	terminal []streamEvent
	// done says that "data: [DONE]" ends the stream (chat and text completions over SSE).
	done bool
	// countEvents makes Fault.AfterChunks count every event (Responses) rather than outputs.
	countEvents bool
	// padded returns an output event holding n bytes of padding (KindOversized, KindGzipBomb).
	padded func(n int) streamEvent
	// errorEvent carries a KindErrorEvent's error object; failed a KindResponseFailed's (nil:
	// as errorEvent).
	errorEvent func(e *apiError) streamEvent
	failed     func(e *apiError) streamEvent
}

// len returns the number of events of the stream without faults.
func (p *streamPlan) len() int {
	return len(p.head) + p.outputs + len(p.closing) + len(p.terminal)
}

// event returns the i-th event and whether it carries output.
func (p *streamPlan) event(i int) (streamEvent, bool) {
	if i < len(p.head) {
		return p.head[i], false
	}
	i -= len(p.head)
	if i < p.outputs {
		return p.output(i), true
	}
	i -= p.outputs
	if i < len(p.closing) {
		return p.closing[i], false
	}
	return p.terminal[i-len(p.closing)], false
}

// strikeAt returns the index of the event before which f strikes (see Fault.AfterChunks).
func (p *streamPlan) strikeAt(f Fault) int {
	first := len(p.head)
	end := first + p.outputs
	switch {
	case f.Kind == KindStall && f.HeadersOnly && f.AfterChunks == 0:
		return 0
	case !p.countEvents || f.CountOutput:
		return first + min(f.AfterChunks, p.outputs)
	case f.Kind == KindOversized || f.Kind == KindGzipBomb:
		return min(max(f.AfterChunks, first), end) // padding is output: it goes among the outputs
	default:
		return min(f.AfterChunks, end+len(p.closing))
	}
}

// stream writes a streamed answer, shaped by the request's body fault.
func (x *exchange) stream(p *streamPlan) {
	h := x.w.Header()
	switch x.s.cfg.streamFormat {
	case StreamSSE:
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
	case StreamSSEUntyped:
		h["Content-Type"] = nil // keep net/http from sniffing one
	case StreamNDJSON:
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("Cache-Control", "no-cache")
	f := x.fault
	if f.Kind == KindGzipBomb {
		defer x.gzipBody()()
	}
	x.writeHeader(http.StatusOK)
	if !x.flush() {
		return
	}
	strike, n, seq := p.strikeAt(f), p.len(), 0
	for i := 0; i <= n; i++ {
		if i == strike {
			wrote, goOn := x.strike(p, f, i, seq)
			if !goOn {
				return
			}
			seq += wrote
		}
		if i == n {
			break
		}
		ev, output := p.event(i)
		if output && !x.pause(x.s.draw(x.s.cfg.interval)) {
			return
		}
		if !x.writeEvent(ev, seq, false) {
			return
		}
		seq++
	}
	if p.done && x.s.cfg.streamFormat != StreamNDJSON {
		x.writeEvent(fixedEvent([]byte("[DONE]")), seq, false)
	}
}

// strike applies the body fault f to stream p before its i-th event, seq events having been
// written. It returns the number of events it wrote and whether the stream goes on.
func (x *exchange) strike(p *streamPlan, f Fault, i, seq int) (wrote int, goOn bool) {
	switch f.Kind {
	case KindStall:
		return 0, x.stall()
	case KindOversized, KindGzipBomb:
		return 1, x.writeEvent(p.padded(oversize(f)), seq, false)
	case KindStreamReset:
		x.abort()
	case KindTruncate:
	case KindErrorEvent:
		x.writeEvent(p.errorEvent(eventError(f)), seq, false)
	case KindResponseFailed:
		ev := p.errorEvent(eventError(f))
		if p.failed != nil {
			ev = p.failed(failedError(f))
		}
		x.writeEvent(ev, seq, false)
	case KindMalformedJSON:
		ev, _ := p.event(min(i, p.len()-1))
		x.writeEvent(ev, seq, true)
	default:
		return 0, true
	}
	return 0, false
}

// writeEvent writes one event in the server's stream format and flushes it; half writes
// only the first half of its data (KindMalformedJSON). It reports false if the client is
// gone.
func (x *exchange) writeEvent(ev streamEvent, seq int, half bool) bool {
	data := ev.data(seq)
	if half {
		data = data[:len(data)/2]
	}
	buf := make([]byte, 0, len(ev.name)+len(data)+16)
	if x.s.cfg.streamFormat == StreamNDJSON {
		buf = append(append(buf, data...), '\n')
	} else {
		if ev.name != "" {
			buf = append(append(append(buf, "event: "...), ev.name...), '\n')
		}
		buf = append(append(append(buf, "data: "...), data...), "\n\n"...)
	}
	if _, err := x.w.Write(buf); err != nil {
		return false
	}
	return x.flush()
}

// padText returns n bytes of filler text.
func padText(n int) string { return strings.Repeat("x", n) }

// padSpaces returns n spaces: filler that keeps tool-call arguments valid JSON when it falls
// between two of their tokens.
func padSpaces(n int) string { return strings.Repeat(" ", n) }
