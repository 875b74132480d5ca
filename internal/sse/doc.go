// Package sse is an incremental Server-Sent Events scanner for LLM streams.
//
// A [Scanner] reads an event stream (text/event-stream) from an [io.Reader] and
// yields one [Event] per call to [Scanner.Next]. It follows the WHATWG parsing
// rules: `data:` with or without the single optional space, multi-line data
// joined by '\n', comments (lines that start with ':'), CRLF, LF and lone CR line
// endings, `event`, `id` and `retry` fields, and a leading byte order mark.
//
// The scanner reuses one buffer: the byte slices in an [Event] point into it and
// are valid until the next call to [Scanner.Next]. In steady state it allocates
// nothing per event. The size of one event is bounded ([Options.MaxEventSize]);
// a larger event fails with [ErrEventTooLarge] naming the limit.
//
// [Event.Raw] holds the exact bytes of the event as received, so a proxy can
// pass events through unchanged; with [Options.EmitEmpty] it also receives the
// blocks that carry no data (comment keep-alives), so it can forward them at
// once and keep the downstream connection alive.
//
// When the stream dies in the middle of an event, [Scanner.Err] returns a
// [*StreamError] that wraps [io.ErrUnexpectedEOF] (or the reader's own error) and
// says how many events and bytes were read; a clean end of stream is a nil error.
package sse
