package tracing

import (
	"time"
	"unicode/utf8"

	"github.com/infermesh/infermesh/internal/wire"
)

// Chunk is what a zero-allocation scan of one OpenAI-style JSON object (a
// stream chunk or a whole response) found: id, model, usage, finish reasons,
// whether it carries content, an error object. Its byte slices point into
// the parsed data. Reuse one Chunk per stream; ParseChunk resets it.
type Chunk = wire.Fields

// ParseChunk scans data, one JSON object such as an SSE event's data, into ch
// without allocating. Malformed JSON yields an error with the byte offset.
// The "[DONE]" marker is not JSON: check for it first.
func ParseChunk(data []byte, ch *Chunk) error { return wire.Parse(data, ch) }

// ChunkParser parses the chunks of one stream faster than ParseChunk: it
// remembers the bytes every OpenAI chunk repeats before "choices" (id,
// object, created, model, system_fingerprint) and skips them when the next
// chunk starts the same way. Its Parse method has ParseChunk's contract. The
// zero value is ready; use one per stream; not safe for concurrent use.
type ChunkParser = wire.Parser

// ObserveChunk records one parsed stream chunk: it counts it, takes the time
// of the first chunk with content (a role-only first chunk does not count:
// reasoning models send it before they think), keeps the first response
// model and id, collects finish reasons, takes usage from a chunk that
// carries it (the final usage chunk; usage is never estimated when none
// came), and captures the completion text with CaptureContent. It does not
// allocate in steady state.
func (c *Call) ObserveChunk(ch *Chunk) {
	if c == nil || ch == nil {
		return
	}
	f := c.flags.Load()
	if f&flagEnded != 0 {
		return
	}
	c.chunks.Add(1)
	// The common chunk (more content of a stream already under way) needs
	// nothing else: no lock, no clock.
	if (!ch.HasContent || f&flagFirst != 0) && (f&flagMeta != 0 || len(ch.Model) == 0) &&
		ch.NumFinishReasons == 0 && ch.UsageState != wire.UsagePresent && (len(ch.Content) == 0 || !c.CaptureContent()) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	if ch.HasContent && c.firstChunk.IsZero() {
		c.firstChunk = time.Now()
		c.flags.Or(flagFirst)
	}
	c.applyLocked(ch)
}

// ObserveEvent parses one SSE event's data and records it as ObserveChunk
// does; "[DONE]" and malformed data are ignored. It uses a stream parser
// that skips the bytes every chunk repeats. Use it when the caller does not
// need the parsed chunk itself; otherwise parse once (ParseChunk or a
// ChunkParser) and call ObserveChunk.
func (c *Call) ObserveEvent(data []byte) {
	if c == nil || string(data) == "[DONE]" {
		return
	}
	var ch Chunk
	c.pmu.Lock()
	if c.parser == nil {
		c.parser = new(wire.Parser)
	}
	err := c.parser.Parse(data, &ch)
	c.pmu.Unlock()
	if err != nil {
		return
	}
	c.ObserveChunk(&ch)
}

// ObserveJSON records a whole (non-streamed) JSON response body: response
// model and id, finish reasons, usage, and the completion text with
// CaptureContent. Malformed bodies are ignored. It parses only when the call
// records; the caller keeps its own error handling.
func (c *Call) ObserveJSON(body []byte) {
	if c == nil {
		return
	}
	var ch Chunk
	if wire.Parse(body, &ch) != nil {
		return
	}
	c.mu.Lock()
	if !c.ended {
		c.applyLocked(&ch)
	}
	c.mu.Unlock()
}

func (c *Call) applyLocked(ch *Chunk) {
	if c.respModel == "" && len(ch.Model) > 0 {
		c.respModel = c.in.intern(ch.Model)
		c.flags.Or(flagMeta)
	}
	if c.respID == "" && len(ch.ID) > 0 {
		c.respID = wire.Unquote(ch.ID)
	}
	for _, r := range ch.Reasons() {
		c.addReasonLocked(c.in.intern(r))
	}
	if ch.UsageState == wire.UsagePresent {
		u := &ch.Usage
		c.usageIn, c.usageOut, c.usageTotal = -1, -1, -1
		if u.HasInput && u.InputTokens >= 0 {
			c.usageIn = u.InputTokens
		}
		if u.HasOutput && u.OutputTokens >= 0 {
			c.usageOut = u.OutputTokens
		}
		if u.HasTotal && u.TotalTokens > 0 {
			c.usageTotal = u.TotalTokens
		}
		c.hasUsage = true
	}
	if len(ch.Content) > 0 && c.rec && c.in.capture {
		room := c.in.maxContent - len(c.outRaw)
		if room > 0 {
			c.outRaw = append(c.outRaw, truncateRaw(ch.Content, room)...)
		}
	}
}

// intern returns raw JSON string contents as a string. Response models and
// finish reasons repeat: a lookup spares their allocation.
func (in *Instrumenter) intern(raw []byte) string {
	if m := in.names.m.Load(); m != nil {
		if s, ok := (*m)[string(raw)]; ok {
			return s
		}
	}
	return in.names.store(string(raw), wire.Unquote(raw), maxNames, nil)
}

// outputMessages returns gen_ai.output.messages: the text set by Content, or
// the captured completion text in the conventions' message schema.
func (c *Call) outputMessages() string {
	if c.hasOutput {
		return c.output
	}
	if len(c.outRaw) == 0 {
		return ""
	}
	b := make([]byte, 0, len(c.outRaw)+96)
	b = append(b, `[{"role":"assistant","parts":[{"type":"text","content":"`...)
	b = append(b, c.outRaw...) // raw JSON string contents: already escaped
	b = append(b, `"}]`...)
	if len(c.reasons) > 0 {
		b = append(b, `,"finish_reason":"`...)
		b = appendJSONString(b, c.reasons[0])
		b = append(b, '"')
	}
	b = append(b, "}]"...)
	return string(b)
}

// appendJSONString appends s escaped for a JSON string (without quotes).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"' || ch == '\\':
			b = append(b, '\\', ch)
		case ch < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xF])
		default:
			b = append(b, ch)
		}
	}
	return b
}

// truncateRaw cuts raw JSON string contents to at most n bytes without
// splitting an escape sequence or a UTF-8 character.
func truncateRaw(raw []byte, n int) []byte {
	if len(raw) <= n {
		return raw
	}
	i := 0
	for i < len(raw) {
		step := 1
		switch c := raw[i]; {
		case c == '\\':
			step = 2
			if i+1 < len(raw) && raw[i+1] == 'u' {
				step = 6
			}
		case c >= utf8.RuneSelf:
			_, step = utf8.DecodeRune(raw[i:])
		}
		if i+step > n {
			break
		}
		i += step
	}
	return raw[:i]
}

// truncateString cuts s to at most n bytes at a UTF-8 character boundary.
func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
