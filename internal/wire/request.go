package wire

// Request is what a client needs to know of an OpenAI request body before sending
// it: the model, whether a stream was asked for, and whether the final usage chunk
// was. Its byte slices point into the parsed input.
type Request struct {
	// Model is the raw contents of the top-level string "model"; nil when absent.
	Model []byte
	// Stream is the top-level "stream": true.
	Stream bool
	// IncludeUsage is "stream_options": {"include_usage": true}.
	IncludeUsage bool
	// StreamOptions reports a top-level "stream_options" key of any value.
	StreamOptions bool
}

// ParseRequest scans data, which must hold one JSON object, and fills r. It never
// allocates unless it returns an error; a body that is not valid JSON is a
// *SyntaxError with its offset.
func ParseRequest(data []byte, r *Request) error {
	*r = Request{}
	p := parser{b: data, cs: -1}
	p.ws()
	if p.i >= len(p.b) {
		return p.fail("unexpected end of input")
	}
	if p.b[p.i] != '{' {
		return p.fail("request body is not a JSON object")
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
		case "model":
			r.Model, err = p.optString()
		case "stream":
			r.Stream, err = p.optBool()
		case "stream_options":
			r.StreamOptions = true
			r.IncludeUsage = false
			err = p.streamOptions(r)
		default:
			err = p.skip()
		}
		if err != nil {
			return err
		}
	}
	p.leave()
	return p.end()
}

// optBool reads true or false, or skips any other value as false.
func (p *parser) optBool() (bool, error) {
	switch p.b[p.i] {
	case 't':
		return true, p.literal("true")
	case 'f':
		return false, p.literal("false")
	}
	return false, p.skip()
}

// streamOptions reads "include_usage" from a stream_options object.
func (p *parser) streamOptions(r *Request) error {
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
		if string(name) == "include_usage" {
			r.IncludeUsage, err = p.optBool()
		} else {
			err = p.skip()
		}
		if err != nil {
			return err
		}
	}
	p.leave()
	return nil
}
