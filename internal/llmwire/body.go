package llmwire

import (
	"github.com/tidwall/gjson"
)

// Body is what a complete (non-streamed) JSON response body carries.
type Body struct {
	// Head's Error is the error object the body carries: an error answer, a 200 whose
	// body is an error object (the business error a mesh cannot see), or a Responses API
	// response whose status is "failed".
	Head
	// FinishReasons are the finish reasons of the choices, or a Responses API
	// response's status.
	FinishReasons []string
	// Text is the first choice's text (chat message content or completion text), or a
	// Responses API response's output text.
	Text string
}

// ParseBody reads a complete JSON response body of any operation. A body that is not
// JSON is ErrMalformed; an empty body or one that is not an object is a Body with
// nothing set.
//
// With detail false it reads only what judging an answer and trueing up a quota need
// (the error object and the usage) and leaves the choices unread; detail adds the
// model, id, finish reasons and text, which only tracing records.
func ParseBody(data []byte, detail bool) (Body, error) {
	if !gjson.ValidBytes(data) {
		return Body{}, ErrMalformed
	}
	doc := gjson.ParseBytes(data)
	if !doc.IsObject() {
		return Body{}, nil
	}
	if doc.Get("object").String() == "response" {
		return responseBody(doc, detail), nil
	}
	var b Body
	doc.ForEach(func(k, v gjson.Result) bool {
		if b.read(k.Str, v) {
			return true
		}
		switch k.Str {
		case "choices":
			if !detail {
				return true
			}
			var ev Event
			first := true
			v.ForEach(func(_, ch gjson.Result) bool {
				text := ev.Text
				chunkChoice(ch, &ev)
				if !first {
					ev.Text = text // only the first choice's text is kept
				}
				first = false
				return true
			})
			b.FinishReasons, b.Text = ev.FinishReasons, ev.Text
		}
		return true
	})
	return b, nil
}

// responseBody reads a Responses API response object.
func responseBody(r gjson.Result, detail bool) Body {
	var b Body
	r.ForEach(func(k, v gjson.Result) bool {
		if b.read(k.Str, v) {
			return true
		}
		switch k.Str {
		case "status":
			if v.Str != "" {
				b.FinishReasons = []string{v.Str}
			}
		case "output":
			if detail {
				b.Text = outputText(v)
			}
		}
		return true
	})
	if b.Error == nil && len(b.FinishReasons) == 1 && b.FinishReasons[0] == "failed" {
		b.Error = &ErrorObject{Type: "server_error", Message: "response failed"}
	}
	return b
}

// outputText joins the output_text parts of a Responses API response's message items.
func outputText(output gjson.Result) string {
	var text string
	output.ForEach(func(_, item gjson.Result) bool {
		if item.Get("type").String() != "message" {
			return true
		}
		item.Get("content").ForEach(func(_, part gjson.Result) bool {
			if part.Get("type").String() == "output_text" {
				text += part.Get("text").String()
			}
			return true
		})
		return true
	})
	return text
}

// ErrorText is the message of an error body that is not an OpenAI error object but says
// what went wrong in a common way: {"error":"..."}, {"message":"..."}, FastAPI's
// {"detail":"..."} or {"detail":[{"msg":"..."}]}. It is "" for anything else.
func ErrorText(data []byte) string {
	if !gjson.ValidBytes(data) {
		return ""
	}
	r := gjson.GetManyBytes(data, "error", "message", "detail", "detail.0.msg")
	for _, v := range r {
		if v.Type == gjson.String && v.Str != "" {
			return v.Str
		}
	}
	return ""
}

// Head is what every response shape carries: the response's model and id, an error
// object, and the token usage.
type Head struct {
	Model, ID string
	Error     *ErrorObject
	Usage     Usage
}

// read sets the member k of a response object to v when it is one of Head's, and
// reports whether it was.
func (h *Head) read(k string, v gjson.Result) bool {
	switch k {
	case "id":
		h.ID = v.String()
	case "model":
		h.Model = v.String()
	case "error":
		h.Error = errorObject(v)
	case "usage":
		h.Usage = usage(v)
	default:
		return false
	}
	return true
}
