package llmtest

import (
	"bytes"
	"net/http"
	"strings"
)

// streamPlan is the sequence of SSE events of one streamed completion.
type streamPlan struct {
	role    []byte             // the chat role chunk; nil for text completions
	content []byte             // one content chunk (all are alike)
	chunks  int                // the number of content chunks
	padded  func(n int) []byte // a content chunk holding n bytes of text (KindOversized)
	final   []byte             // the chunk carrying finish_reason
	usage   []byte             // the usage-only chunk; nil unless include_usage
}

// writeEvent writes one "data: ...\n\n" event and flushes it; it reports false if the
// client is gone.
func (x *exchange) writeEvent(data []byte) bool {
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := x.w.Write(buf); err != nil {
		return false
	}
	return x.flush()
}

// stream writes a streamed completion, shaped by the request's body fault.
func (x *exchange) stream(p streamPlan) {
	h := x.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	x.writeHeader(http.StatusOK)
	if !x.flush() {
		return
	}
	f := x.fault
	at := min(f.AfterChunks, p.chunks)
	if f.Kind == KindStall && at == 0 && (f.HeadersOnly || p.role == nil) {
		if !x.stall() {
			return
		}
		f.Kind = KindNone // the stall is over
	}
	if p.role != nil && !x.writeEvent(p.role) {
		return
	}
	for i := 0; ; i++ {
		if i == at {
			switch f.Kind {
			case KindStall:
				if !x.stall() {
					return
				}
			case KindStreamReset:
				x.abort()
			case KindErrorEvent:
				x.writeEvent(bytes.TrimSpace(errorBody(eventError(f))))
				return
			case KindMalformedJSON:
				x.writeEvent(p.content[:len(p.content)/2])
				return
			case KindOversized:
				if !x.writeEvent(p.padded(oversize(f))) {
					return
				}
			}
		}
		if i == p.chunks {
			break
		}
		if !x.pause(x.s.draw(x.s.cfg.interval)) || !x.writeEvent(p.content) {
			return
		}
	}
	if !x.writeEvent(p.final) {
		return
	}
	if p.usage != nil && !x.writeEvent(p.usage) {
		return
	}
	x.writeEvent([]byte("[DONE]"))
}

// padText returns n bytes of filler text.
func padText(n int) string { return strings.Repeat("x", n) }
