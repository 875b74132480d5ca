package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxFinishReasons is how many finish reasons a Fields keeps; further ones are
// counted in NumFinishReasons but not stored.
const MaxFinishReasons = 8

// maxDepth bounds the nesting of arrays and objects, as encoding/json does.
const maxDepth = 10000

// UsageState tells whether an object carried usage.
type UsageState uint8

const (
	// UsageAbsent: no "usage" key, or its value was neither an object nor null.
	UsageAbsent UsageState = iota
	// UsageNull: "usage": null (OpenAI sends it on every chunk but the last
	// when stream_options.include_usage is set).
	UsageNull
	// UsagePresent: "usage" was an object; see Usage for the counts it held.
	UsagePresent
)

// String returns "absent", "null" or "present".
func (s UsageState) String() string {
	switch s {
	case UsageNull:
		return "null"
	case UsagePresent:
		return "present"
	default:
		return "absent"
	}
}

// Usage holds the token counts of a "usage" object. A count is set only when
// its key held an integer that fits in int64; the Has fields say which were.
type Usage struct {
	// InputTokens is prompt_tokens, or input_tokens when prompt_tokens is absent.
	InputTokens int64
	// OutputTokens is completion_tokens, or output_tokens when completion_tokens is absent.
	OutputTokens int64
	// TotalTokens is total_tokens.
	TotalTokens int64

	HasInput, HasOutput, HasTotal bool
}

// ErrorObject is a top-level "error" value. Each field holds the raw JSON
// string contents of its key, or the literal text when the value was a number
// or boolean (providers send "code" as either); nil when absent or null.
type ErrorObject struct {
	// Present reports a non-null "error" value. A string value
	// ({"error": "model not found"}) is reported as Message.
	Present bool
	Message []byte
	Type    []byte
	Code    []byte
	Param   []byte
}

// Fields is what Parse found in one JSON object. Its byte slices point into
// the parsed input. Reuse one Fields across calls: Parse resets it.
type Fields struct {
	// ID, Model and Object are the raw contents of the top-level string keys
	// "id", "model" and "object"; nil when absent or not strings.
	ID, Model, Object []byte

	// UsageState says whether "usage" was absent, null or an object; Usage
	// holds its counts.
	UsageState UsageState
	Usage      Usage

	// Choices is the number of elements of the "choices" array, or -1 when
	// there was no array (absent, null, or another type). A chunk with
	// Choices == 0 and UsageState == UsagePresent is the usage-only chunk
	// OpenAI sends last when stream_options.include_usage is set.
	Choices int

	// FinishReasons holds the first MaxFinishReasons non-empty string
	// "finish_reason" values of the choices, in order; NumFinishReasons counts
	// them all. Use Reasons for the stored ones.
	FinishReasons    [MaxFinishReasons][]byte
	NumFinishReasons int

	// HasContent reports deliverable content: some choice whose "delta" or
	// "message" has a non-empty "content" (string or array), "reasoning_content",
	// "reasoning" or "refusal", a non-empty "tool_calls" array, a non-null
	// "function_call" or "audio", or a choice with a non-empty legacy completions
	// "text", or a finish reason. A role-only first chunk has HasContent false.
	HasContent bool

	// Content is the raw text of the first choice: its delta or message
	// "content" string, or its legacy "text"; nil when there was none.
	Content []byte

	// Error is the top-level "error" value.
	Error ErrorObject
}

// Reasons returns the stored finish reasons (at most MaxFinishReasons).
func (f *Fields) Reasons() [][]byte {
	return f.FinishReasons[:min(f.NumFinishReasons, MaxFinishReasons)]
}

// SyntaxError is returned by Parse for malformed JSON.
type SyntaxError struct {
	// Offset is the byte offset in the input where the problem was found.
	Offset int
	// Msg describes the problem.
	Msg string
}

// Error implements error.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("wire: %s at offset %d", e.Msg, e.Offset)
}

// Parse scans data, which must hold exactly one JSON object (surrounding
// white space allowed), and fills f. It never allocates unless it returns an
// error. On error, f holds what was found before the problem.
func Parse(data []byte, f *Fields) error {
	*f = Fields{Choices: -1}
	p := parser{b: data}
	return p.parse(f, nil)
}

// Parser parses the chunks of one stream, faster than Parse, with the same
// results. Two caches make the common chunk cheap, both sound because the
// parse of equal bytes is equal:
//
//   - A content template: when a chunk is the previous template chunk with
//     only its first choice's "content" string changed (OpenAI's content
//     chunks differ in nothing else), it checks the equal prefix and suffix,
//     scans the new string and adjusts the remembered fields.
//   - A prefix: OpenAI repeats id, object, created, model and
//     system_fingerprint byte for byte before "choices"; a chunk that starts
//     with the remembered bytes resumes after them.
//
// The zero value is ready; use one per stream. It allocates only to grow its
// copies of earlier chunks. Not safe for concurrent use.
type Parser struct {
	prefix                []byte
	first                 bool // "choices" was the first key: the prefix ends after '{'
	id, model, object     span
	hasID, hasModel, hasO bool

	tmpl     []byte // the template chunk
	tcs, tce int    // its first-choice content string contents
	tf       Fields // its fields, slices into tmpl
	tother   bool   // HasContent from something other than that string
}

// span is a byte range of a cached prefix.
type span struct{ s, e int }

// Parse is like the package-level Parse.
func (ps *Parser) Parse(data []byte, f *Fields) error {
	if ps.fromTemplate(data, f) {
		return nil
	}
	*f = Fields{Choices: -1}
	p := parser{b: data, cs: -1}
	var err error
	if n := len(ps.prefix); n > 0 && len(data) > n && string(data[:n]) == string(ps.prefix) {
		err = ps.resume(&p, f)
	} else {
		err = p.parse(f, ps)
	}
	if err == nil && p.sites == 1 && p.cs >= 0 {
		ps.saveTemplate(data, &p, f)
	}
	return err
}

// resume continues after the cached prefix.
func (ps *Parser) resume(p *parser, f *Fields) error {
	data, n := p.b, len(ps.prefix)
	p.i, p.depth = n, 1
	if ps.hasID {
		f.ID = data[ps.id.s:ps.id.e]
	}
	if ps.hasModel {
		f.Model = data[ps.model.s:ps.model.e]
	}
	if ps.hasO {
		f.Object = data[ps.object.s:ps.object.e]
	}
	// The prefix ends where the "choices" key began. After a ',' a key
	// must follow (as key checks after a separator); after the '{' the
	// object may also end.
	if !ps.first {
		i := skipWS(data, n)
		if i >= len(data) {
			return p.failAt(i, "unexpected end of input in object")
		}
		if data[i] != '"' {
			return p.failAt(i, "expected a string key in object")
		}
	}
	if err := p.topKeys(f, true, nil); err != nil {
		return err
	}
	return p.end()
}

// Reset forgets the cached chunks, for a new stream. It keeps the buffers that held
// them unless they grew past 64 KiB for some huge chunk.
func (ps *Parser) Reset() {
	const keep = 64 << 10
	prefix, tmpl := ps.prefix[:0], ps.tmpl[:0]
	if cap(prefix) > keep {
		prefix = nil
	}
	if cap(tmpl) > keep {
		tmpl = nil
	}
	*ps = Parser{prefix: prefix, tmpl: tmpl}
}

// saveTemplate remembers data, just parsed into f without error, whose first
// choice has one content string at [p.cs, p.ce).
func (ps *Parser) saveTemplate(data []byte, p *parser, f *Fields) {
	ps.tmpl = append(ps.tmpl[:0], data...)
	ps.tcs, ps.tce, ps.tother = p.cs, p.ce, p.other
	ps.tf = *f
	t := &ps.tf
	re := func(sub []byte) []byte {
		if sub == nil {
			return nil
		}
		off := cap(data) - cap(sub)
		return ps.tmpl[off : off+len(sub) : len(ps.tmpl)]
	}
	t.ID, t.Model, t.Object, t.Content = re(t.ID), re(t.Model), re(t.Object), nil
	for i := range t.Reasons() {
		t.FinishReasons[i] = re(t.FinishReasons[i])
	}
	t.Error.Message, t.Error.Type, t.Error.Code, t.Error.Param =
		re(t.Error.Message), re(t.Error.Type), re(t.Error.Code), re(t.Error.Param)
}

// fromTemplate parses data through the content template, if it fits.
func (ps *Parser) fromTemplate(data []byte, f *Fields) bool {
	t := ps.tmpl
	if len(t) == 0 {
		return false
	}
	suffix := t[ps.tce:]
	mid := len(data) - len(suffix)
	if mid < ps.tcs || string(data[:ps.tcs]) != string(t[:ps.tcs]) || string(data[mid:]) != string(suffix) {
		return false
	}
	// The new string must end exactly where the equal suffix begins.
	if end, _, code := scanString(data, ps.tcs); code != strOK || end != mid {
		return false
	}
	delta := mid - ps.tce
	re := func(sub []byte) []byte {
		if sub == nil {
			return nil
		}
		off := len(t) - cap(sub) // saveTemplate capped each slice at len(tmpl)
		if off >= ps.tce {
			off += delta
		}
		return data[off : off+len(sub)]
	}
	*f = ps.tf
	f.ID, f.Model, f.Object = re(f.ID), re(f.Model), re(f.Object)
	for i := range f.Reasons() {
		f.FinishReasons[i] = re(f.FinishReasons[i])
	}
	f.Error.Message, f.Error.Type, f.Error.Code, f.Error.Param =
		re(f.Error.Message), re(f.Error.Type), re(f.Error.Code), re(f.Error.Param)
	f.Content, f.HasContent = nil, ps.tother
	if mid > ps.tcs {
		f.Content, f.HasContent = data[ps.tcs:mid], true
	}
	return true
}

// save caches data[:n], the bytes before the top-level "choices" key (n is
// the index of the key's opening quote), when only id, model and object were
// found in them. Ending at a quote keeps the prefix at a token boundary: a
// number or literal before it is closed by the separator in the prefix.
func (ps *Parser) save(data []byte, n int, first bool, f *Fields) {
	if f.UsageState != UsageAbsent || f.Error.Present || f.Choices != -1 {
		ps.prefix = ps.prefix[:0]
		return
	}
	ps.prefix = append(ps.prefix[:0], data[:n]...)
	ps.first = first
	ps.id, ps.hasID = offsets(data, f.ID)
	ps.model, ps.hasModel = offsets(data, f.Model)
	ps.object, ps.hasO = offsets(data, f.Object)
}

// offsets returns the range of sub within data (sub was sliced from data).
func offsets(data, sub []byte) (span, bool) {
	if sub == nil {
		return span{}, false
	}
	s := cap(data) - cap(sub)
	return span{s, s + len(sub)}, true
}

func (p *parser) parse(f *Fields, ps *Parser) error {
	p.ws()
	if p.i >= len(p.b) {
		return p.fail("unexpected end of input")
	}
	if p.b[p.i] != '{' {
		if err := p.skip(); err != nil {
			return err
		}
		return &SyntaxError{Offset: 0, Msg: "top-level value is not an object"}
	}
	if err := p.enter(); err != nil {
		return err
	}
	if err := p.topKeys(f, true, ps); err != nil {
		return err
	}
	return p.end()
}

// end checks that only white space follows the top-level object.
func (p *parser) end() error {
	p.ws()
	if p.i != len(p.b) {
		return p.fail("unexpected data after the top-level value")
	}
	return nil
}

type parser struct {
	b     []byte
	i     int
	depth int
	kb    [64]byte // decoded escaped keys

	// For Parser's content template: sites counts the first choice's values
	// that could set Content, [cs, ce) is the last such string's contents,
	// and other reports content (HasContent) from anything else.
	sites  int
	cs, ce int
	other  bool
}

func (p *parser) fail(msg string) error {
	return &SyntaxError{Offset: p.i, Msg: msg}
}

func (p *parser) ws() { p.i = skipWS(p.b, p.i) }

// enter and leave track container nesting.
func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.fail("exceeded max nesting depth")
	}
	p.i++ // the '{' or '['
	return nil
}

func (p *parser) leave() { p.depth-- }

// key reads the next key of an object whose '{' has been consumed. first is
// true before the first key. It returns a nil key at the closing '}', which it
// consumes (an empty key "" is a non-nil empty slice). escaped reports escapes
// in the key. On success p.i is at the value. The position is kept in a local
// variable: the hot path stays out of memory.
func (p *parser) key(first bool) (k []byte, escaped bool, err error) {
	b := p.b
	i := skipWS(b, p.i)
	if i >= len(b) {
		return nil, false, p.failAt(i, "unexpected end of input in object")
	}
	switch c := b[i]; {
	case c == '}':
		p.i = i + 1
		return nil, false, nil
	case !first:
		if c != ',' {
			return nil, false, p.failAt(i, "expected ',' or '}' in object")
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return nil, false, p.failAt(i, "unexpected end of input in object")
		}
	}
	if b[i] != '"' {
		return nil, false, p.failAt(i, "expected a string key in object")
	}
	end, esc, code := scanString(b, i+1)
	if code != strOK {
		return nil, false, p.failAt(end, code.String())
	}
	k = b[i+1 : end]
	i = skipWS(b, end+1)
	if i >= len(b) || b[i] != ':' {
		return nil, false, p.failAt(i, "expected ':' after object key")
	}
	i = skipWS(b, i+1)
	if i >= len(b) {
		return nil, false, p.failAt(i, "unexpected end of input: missing object value")
	}
	p.i = i
	return k, esc, nil
}

// skipWS returns the index of the first non-white-space byte at or after i.
func skipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

func (p *parser) failAt(i int, msg string) error {
	p.i = i
	return &SyntaxError{Offset: i, Msg: msg}
}

// next reads the separator before the next array element of an array whose
// '[' has been consumed. It returns false at the closing ']', which it consumes.
func (p *parser) next(first bool) (bool, error) {
	b := p.b
	i := skipWS(b, p.i)
	if i >= len(b) {
		return false, p.failAt(i, "unexpected end of input in array")
	}
	c := b[i]
	if c == ']' {
		p.i = i + 1
		return false, nil
	}
	if !first {
		if c != ',' {
			return false, p.failAt(i, "expected ',' or ']' in array")
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return false, p.failAt(i, "unexpected end of input in array")
		}
		if b[i] == ']' {
			return false, p.failAt(i, "unexpected ']' after ','")
		}
	}
	p.i = i
	return true, nil
}

// keyName returns the key for switching, decoding escapes into p.kb when
// present. Long or undecodable escaped keys yield nil (no key of interest).
func (p *parser) keyName(raw []byte, escaped bool) []byte {
	if !escaped {
		return raw
	}
	if len(raw) > 6*len(p.kb) {
		return nil
	}
	d, ok := appendUnquoted(p.kb[:0], raw)
	if !ok || len(d) > len(p.kb) {
		return nil
	}
	return d
}

// member steps to the next member of the object p is in: name is its key for
// switching (see keyName), raw the key as written; raw is nil at the object's end.
func (p *parser) member(first bool) (name, raw []byte, err error) {
	raw, esc, err := p.key(first)
	if err != nil || raw == nil {
		return nil, nil, err
	}
	return p.keyName(raw, esc), raw, nil
}

// topKeys reads the keys of the top-level object, whose '{' has been
// consumed, up to and including its '}'. With ps, it caches the bytes before
// a "choices" key.
func (p *parser) topKeys(f *Fields, first bool, ps *Parser) error {
	for ; ; first = false {
		name, raw, err := p.member(first)
		if err != nil {
			return err
		}
		if raw == nil {
			break
		}
		switch string(name) {
		case "id":
			f.ID, err = p.optString()
		case "model":
			f.Model, err = p.optString()
		case "object":
			f.Object, err = p.optString()
		case "usage":
			f.Usage = Usage{}
			f.UsageState, err = p.usage(&f.Usage)
		case "choices":
			if ps != nil {
				ps.save(p.b, cap(p.b)-cap(raw)-1, first, f)
				ps = nil
			}
			if f.Choices != -1 || f.NumFinishReasons > 0 || f.HasContent {
				// A duplicate key: the last one wins.
				f.Choices, f.NumFinishReasons, f.HasContent, f.Content = -1, 0, false, nil
				f.FinishReasons = [MaxFinishReasons][]byte{}
				p.sites += 2 // no content template
			}
			err = p.choices(f)
		case "error":
			f.Error = ErrorObject{}
			err = p.errorValue(&f.Error)
		default:
			err = p.skip()
		}
		if err != nil {
			return err
		}
	}
	p.leave()
	return nil
}

// optString reads a string value (returning its raw contents) or skips any
// other value (returning nil).
func (p *parser) optString() ([]byte, error) {
	if p.b[p.i] != '"' {
		return nil, p.skip()
	}
	s, e, _, err := p.str()
	if err != nil {
		return nil, err
	}
	return p.b[s:e], nil
}

func (p *parser) usage(u *Usage) (UsageState, error) {
	switch p.b[p.i] {
	case 'n':
		if err := p.skip(); err != nil {
			return UsageAbsent, err
		}
		return UsageNull, nil
	case '{':
	default:
		return UsageAbsent, p.skip()
	}
	if err := p.enter(); err != nil {
		return UsageAbsent, err
	}
	var prompt, input, completion, output int64
	var hasPrompt, hasInput, hasCompletion, hasOutput bool
	for first := true; ; first = false {
		name, raw, err := p.member(first)
		if err != nil {
			return UsagePresent, err
		}
		if raw == nil {
			break
		}
		switch string(name) {
		case "prompt_tokens":
			prompt, hasPrompt, err = p.intValue()
		case "input_tokens":
			input, hasInput, err = p.intValue()
		case "completion_tokens":
			completion, hasCompletion, err = p.intValue()
		case "output_tokens":
			output, hasOutput, err = p.intValue()
		case "total_tokens":
			u.TotalTokens, u.HasTotal, err = p.intValue()
		default:
			err = p.skip()
		}
		if err != nil {
			return UsagePresent, err
		}
	}
	p.leave()
	switch {
	case hasPrompt:
		u.InputTokens, u.HasInput = prompt, true
	case hasInput:
		u.InputTokens, u.HasInput = input, true
	}
	switch {
	case hasCompletion:
		u.OutputTokens, u.HasOutput = completion, true
	case hasOutput:
		u.OutputTokens, u.HasOutput = output, true
	}
	return UsagePresent, nil
}

func (p *parser) choices(f *Fields) error {
	if p.b[p.i] != '[' {
		return p.skip()
	}
	if err := p.enter(); err != nil {
		return err
	}
	n := 0
	for first := true; ; first = false {
		more, err := p.next(first)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		if p.b[p.i] == '{' {
			err = p.choice(f, n == 0)
		} else {
			err = p.skip()
		}
		if err != nil {
			return err
		}
		n++
	}
	p.leave()
	f.Choices = n
	return nil
}

func (p *parser) choice(f *Fields, firstChoice bool) error {
	if err := p.enter(); err != nil {
		return err
	}
	for first := true; ; first = false {
		name, raw, err := p.member(first)
		if err != nil {
			return err
		}
		if raw == nil {
			break
		}
		switch string(name) {
		case "finish_reason":
			var r []byte
			r, err = p.optString()
			if err == nil && len(r) > 0 {
				if f.NumFinishReasons < MaxFinishReasons {
					f.FinishReasons[f.NumFinishReasons] = r
				}
				f.NumFinishReasons++
				f.HasContent, p.other = true, true
			}
		case "delta", "message":
			err = p.message(f, firstChoice)
		case "text":
			var t []byte
			t, err = p.optString()
			if firstChoice {
				p.sites += 2 // text is not a content template
			}
			if err == nil && len(t) > 0 {
				f.HasContent, p.other = true, true
				if firstChoice && f.Content == nil {
					f.Content = t
				}
			}
		default:
			err = p.skip()
		}
		if err != nil {
			return err
		}
	}
	p.leave()
	return nil
}

func (p *parser) message(f *Fields, firstChoice bool) error {
	if p.b[p.i] != '{' {
		return p.skip()
	}
	if err := p.enter(); err != nil {
		return err
	}
	for first := true; ; first = false {
		name, raw, err := p.member(first)
		if err != nil {
			return err
		}
		if raw == nil {
			break
		}
		switch string(name) {
		case "content":
			if p.b[p.i] == '"' {
				var t []byte
				t, err = p.optString()
				if firstChoice {
					p.sites++
					p.cs, p.ce = cap(p.b)-cap(t), cap(p.b)-cap(t)+len(t)
				}
				if err == nil && len(t) > 0 {
					f.HasContent = true
					if firstChoice {
						f.Content = t
					} else {
						p.other = true
					}
				}
			} else {
				var nonEmpty bool
				nonEmpty, err = p.nonEmptyContainer()
				f.HasContent = f.HasContent || nonEmpty
				p.other = p.other || nonEmpty
			}
		case "reasoning_content", "reasoning", "refusal", "tool_calls", "function_call", "audio":
			var nonEmpty bool
			nonEmpty, err = p.nonEmptyValue()
			f.HasContent = f.HasContent || nonEmpty
			p.other = p.other || nonEmpty
		default:
			err = p.skip()
		}
		if err != nil {
			return err
		}
	}
	p.leave()
	return nil
}

// nonEmptyValue skips a value and reports whether it was a non-empty string,
// array or object.
func (p *parser) nonEmptyValue() (bool, error) {
	if p.b[p.i] == '"' {
		s, e, _, err := p.str()
		return err == nil && e > s, err
	}
	return p.nonEmptyContainer()
}

// nonEmptyContainer skips a value and reports whether it was a non-empty
// array or object.
func (p *parser) nonEmptyContainer() (bool, error) {
	c := p.b[p.i]
	if c != '[' && c != '{' {
		return false, p.skip()
	}
	start := p.i
	if err := p.skip(); err != nil {
		return false, err
	}
	// Non-empty when anything but white space lies between the brackets.
	for j := start + 1; j < p.i-1; j++ {
		switch p.b[j] {
		case ' ', '\t', '\n', '\r':
		default:
			return true, nil
		}
	}
	return false, nil
}

func (p *parser) errorValue(e *ErrorObject) error {
	switch p.b[p.i] {
	case 'n':
		return p.skip() // null: no error
	case '"':
		e.Present = true
		m, err := p.optString()
		e.Message = m
		return err
	case '{':
	default:
		e.Present = true
		return p.skip()
	}
	e.Present = true
	if err := p.enter(); err != nil {
		return err
	}
	for first := true; ; first = false {
		name, raw, err := p.member(first)
		if err != nil {
			return err
		}
		if raw == nil {
			break
		}
		switch string(name) {
		case "message":
			e.Message, err = p.scalarText()
		case "type":
			e.Type, err = p.scalarText()
		case "code":
			e.Code, err = p.scalarText()
		case "param":
			e.Param, err = p.scalarText()
		default:
			err = p.skip()
		}
		if err != nil {
			return err
		}
	}
	p.leave()
	return nil
}

// scalarText returns a string's raw contents or a number's or boolean's
// literal text; nil for null, arrays and objects.
func (p *parser) scalarText() ([]byte, error) {
	start := p.i
	switch c := p.b[p.i]; {
	case c == '"':
		return p.optString()
	case c == 't' || c == 'f' || c == '-' || (c >= '0' && c <= '9'):
		if err := p.skip(); err != nil {
			return nil, err
		}
		return p.b[start:p.i], nil
	default:
		return nil, p.skip()
	}
}

// intValue reads any value; it returns ok when the value was an integer that
// fits in int64 (as encoding/json would decode it into an int64).
func (p *parser) intValue() (int64, bool, error) {
	c := p.b[p.i]
	if c != '-' && (c < '0' || c > '9') {
		return 0, false, p.skip()
	}
	start := p.i
	if err := p.number(); err != nil {
		return 0, false, err
	}
	lit := p.b[start:p.i]
	neg := false
	if lit[0] == '-' {
		neg = true
		lit = lit[1:]
	}
	var v uint64
	for _, d := range lit {
		if d < '0' || d > '9' {
			return 0, false, nil // fraction or exponent
		}
		if v > (1<<63)/10 {
			return 0, false, nil
		}
		v = v*10 + uint64(d-'0')
		if v > 1<<63 {
			return 0, false, nil
		}
	}
	if neg {
		return -int64(v), true, nil // -(1<<63) wraps to itself, which is correct
	}
	if v > 1<<63-1 {
		return 0, false, nil
	}
	return int64(v), true, nil
}

// lanes has 0x01 in every byte of a word.
const lanes = 0x0101010101010101

// strSafe marks bytes that need no attention inside a string.
var strSafe = func() (t [256]bool) {
	for i := range t {
		t[i] = i >= 0x20 && i != '"' && i != '\\'
	}
	return t
}()

// strCode is the outcome of scanString.
type strCode uint8

const (
	strOK strCode = iota
	strEOF
	strCtl
	strEscape
	strUnicode
)

func (c strCode) String() string {
	switch c {
	case strEOF:
		return "unexpected end of input in string"
	case strCtl:
		return "invalid control character in string"
	case strEscape:
		return "invalid escape in string"
	case strUnicode:
		return "invalid \\u escape"
	}
	return "ok"
}

// scanString scans string contents starting at i (just after the opening
// quote). It returns the index of the closing quote and whether there were
// escapes, or the index of the problem and its code.
func scanString(b []byte, i int) (end int, escaped bool, code strCode) {
	quote := -1 // the next '"' at or after i, once plainRun has looked for it
	for {
		// Eight bytes at a time while none is a quote, a backslash or a
		// control character (SWAR: a byte test on all lanes of a word).
		// The lowest flagged lane is exact (a borrow only runs upward from a
		// lane that matched), so it locates the first such byte.
		limit := min(i+longString, len(b))
		for i+8 <= limit {
			x := binary.LittleEndian.Uint64(b[i:])
			q := x ^ (lanes * '"')
			e := x ^ (lanes * '\\')
			if m := ((x-lanes*0x20)&^x | (q-lanes)&^q | (e-lanes)&^e) & (lanes * 0x80); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto special
			}
			i += 8
		}
		if i+8 <= len(b) {
			// A long run, as prompts and completions are.
			i, quote = plainRun(b, i, quote)
			goto special
		}
		for i < len(b) && strSafe[b[i]] {
			i++
		}
	special:
		if i >= len(b) {
			return i, escaped, strEOF
		}
		switch b[i] {
		case '"':
			return i, escaped, strOK
		case '\\':
			escaped = true
			if i+1 >= len(b) {
				return i, escaped, strEOF
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return i, escaped, strEOF
				}
				for _, h := range b[i+2 : i+6] {
					if unhex(h) < 0 {
						return i, escaped, strUnicode
					}
				}
				i += 6
			default:
				return i, escaped, strEscape
			}
		default:
			return i, escaped, strCtl
		}
	}
}

// longString is the run length after which scanString turns to plainRun:
// shorter runs (keys, ids, most values) cost less in the word loop than in
// IndexByte's setup.
const longString = 64

// plainRun returns the index of the first byte at or after i that ends a run
// of plain string bytes: a quote, a backslash or a control character (or
// len(b)). Prompts and completions are long runs: IndexByte's vector loop
// finds the next quote and backslash, and only the control-character test is
// left to a word loop, two words per step.
func plainRun(b []byte, i, quote int) (int, int) {
	if quote < i {
		quote = len(b)
		if q := bytes.IndexByte(b[i:], '"'); q >= 0 {
			quote = i + q
		}
	}
	rest := b[i:]
	stop := quote - i
	if e := bytes.IndexByte(rest[:stop], '\\'); e >= 0 {
		stop = e
	}
	run := rest[:stop]
	j := 0
	for ; j+16 <= len(run); j += 16 {
		x := binary.LittleEndian.Uint64(run[j:])
		y := binary.LittleEndian.Uint64(run[j+8:])
		if ((x-lanes*0x20)&^x|(y-lanes*0x20)&^y)&(lanes*0x80) != 0 {
			break
		}
	}
	for ; j < len(run); j++ {
		if run[j] < 0x20 {
			return i + j, quote
		}
	}
	return i + stop, quote
}

// str scans a string at p.i (which holds '"') and returns the bounds of its
// contents and whether it contains escapes.
func (p *parser) str() (s, e int, escaped bool, err error) {
	end, esc, code := scanString(p.b, p.i+1)
	if code != strOK {
		return 0, 0, false, p.failAt(end, code.String())
	}
	s = p.i + 1
	p.i = end + 1
	return s, end, esc, nil
}

// number scans a JSON number at p.i.
func (p *parser) number() error {
	b := p.b
	i := p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		p.i = i
		return p.fail("invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			p.i = i
			return p.fail("invalid number: digit expected after '.'")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			p.i = i
			return p.fail("invalid number: digit expected in exponent")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	p.i = i
	return nil
}

func (p *parser) literal(lit string) error {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return p.fail("invalid literal")
	}
	p.i += len(lit)
	return nil
}

// skip scans and validates any JSON value at p.i.
func (p *parser) skip() error {
	if p.i >= len(p.b) {
		return p.fail("unexpected end of input: value expected")
	}
	switch c := p.b[p.i]; c {
	case '"':
		_, _, _, err := p.str()
		return err
	case '{':
		if err := p.enter(); err != nil {
			return err
		}
		for first := true; ; first = false {
			raw, _, err := p.key(first)
			if err != nil {
				return err
			}
			if raw == nil {
				break
			}
			if err := p.skip(); err != nil {
				return err
			}
		}
		p.leave()
		return nil
	case '[':
		if err := p.enter(); err != nil {
			return err
		}
		for first := true; ; first = false {
			more, err := p.next(first)
			if err != nil {
				return err
			}
			if !more {
				break
			}
			if err := p.skip(); err != nil {
				return err
			}
		}
		p.leave()
		return nil
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return p.number()
		}
		return p.fail("invalid character: value expected")
	}
}

func unhex(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// Unquote decodes raw JSON string contents (as Parse reports them) into a
// string. Invalid escapes and invalid UTF-8 become U+FFFD, as encoding/json does.
func Unquote(raw []byte) string {
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			d, _ := appendUnquoted(make([]byte, 0, len(raw)), raw)
			return string(d)
		}
	}
	return string(raw)
}

// AppendUnquoted appends the decoded form of raw JSON string contents to dst.
// Invalid escapes and invalid UTF-8 become U+FFFD.
func AppendUnquoted(dst, raw []byte) []byte {
	d, _ := appendUnquoted(dst, raw)
	return d
}

// appendUnquoted decodes raw into dst; ok is false when raw had an invalid
// escape (which is replaced by U+FFFD).
func appendUnquoted(dst, raw []byte) ([]byte, bool) {
	ok := true
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			if c < utf8.RuneSelf {
				dst = append(dst, c)
				i++
				continue
			}
			r, size := utf8.DecodeRune(raw[i:])
			dst = utf8.AppendRune(dst, r) // RuneError for invalid bytes
			i += size
			continue
		}
		if i+1 >= len(raw) {
			return utf8.AppendRune(dst, utf8.RuneError), false
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			dst = append(dst, raw[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := hex4(raw[i+2:])
			if n == 0 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
				ok = false
				i += 2
				continue
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2, n2 := hex4(raw[i+2:]); n2 > 0 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							dst = utf8.AppendRune(dst, dec)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			dst = utf8.AppendRune(dst, utf8.RuneError)
			ok = false
		}
		i += 2
	}
	return dst, ok
}

func hex4(b []byte) (rune, int) {
	if len(b) < 4 {
		return 0, 0
	}
	var r rune
	for _, c := range b[:4] {
		h := unhex(c)
		if h < 0 {
			return 0, 0
		}
		r = r<<4 | h
	}
	return r, 4
}
