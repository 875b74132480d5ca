package llmclient

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/sjson"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/internal/mesh"
)

// maxMessageBytes caps a message taken from a body that is not an OpenAI error object
// (an Envoy local reply, an HTML error page).
const maxMessageBytes = 1024

// withheld replaces an upstream message that refers to the caller's key.
const withheld = "[message withheld: it referred to the API key]"

// newAPIError builds the typed error of an upstream answer whose (already read) body is
// data: an error status (verdict from the status and the mesh), or an error object in a
// 2xx body or stream (inBody).
func (c *call) newAPIError(status int, data []byte, eo *llmwire.ErrorObject, env mesh.Envoy, v breaker.Verdict, inBody bool) *APIError {
	e := &APIError{StatusCode: status, Envoy: env, InBody: inBody, RetryAfter: v.RetryAfter}
	if inBody {
		// A 2xx is a success to the status classifier; an error inside it is a failure
		// of the call, retryable unless its type says otherwise.
		v = breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassServerError, Signals: env.Signals()}
	}
	msg := ""
	if eo != nil {
		e.Type, e.Code, msg = eo.Type, eo.Code, eo.Message
		refine(&v, eo.Type, eo.Code)
	} else {
		msg = plainMessage(data, env)
	}
	e.Message = c.scrubMessage(msg)
	e.verdict = v
	e.body = c.errorBody(data, eo, e)
	return e
}

// plainMessage is the readable message of an error body that is not an OpenAI error
// object: Envoy's local reply, a FastAPI {"detail":...}, {"message":...} or
// {"error":"..."}, or the text itself.
func plainMessage(data []byte, env mesh.Envoy) string {
	if env.LocalReply != "" {
		return env.LocalReply
	}
	if llmwire.ErrorText(data) != "" {
		return llmwire.ErrorText(data)
	}
	s := strings.TrimSpace(string(data))
	if len(s) > maxMessageBytes {
		s = s[:maxMessageBytes]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// errorBody is the body the caller's SDK decodes: the upstream's own OpenAI error body
// when it had one (with the caller's secrets scrubbed), or one built in that shape.
func (c *call) errorBody(data []byte, eo *llmwire.ErrorObject, e *APIError) []byte {
	if eo != nil && eo.Message == e.Message && len(data) > 0 {
		return c.scrubBytes(data) // the upstream's own error body
	}
	typ, code := e.Type, any(nil)
	if typ == "" {
		typ = string(e.verdict.Class)
	}
	if e.Code != "" {
		code = e.Code
	}
	if eo != nil && len(data) > 0 {
		// The message itself was withheld or scrubbed: rewrite it in the upstream's body.
		if b, err := sjson.SetBytes(c.scrubBytes(data), "error.message", e.Message); err == nil {
			return b
		}
	}
	b, _ := sjson.SetBytes([]byte(`{"error":{"param":null}}`), "error.message", e.Message)
	b, _ = sjson.SetBytes(b, "error.type", typ)
	b, _ = sjson.SetBytes(b, "error.code", code)
	return b
}

// refine adjusts a status-based verdict with what the error object says.
func refine(v *breaker.Verdict, typ, code string) {
	// Providers put the kind in either field (a Responses error event has only its code),
	// so each kind is looked for in both.
	is := func(names ...string) bool {
		return slices.Contains(names, typ) || slices.Contains(names, code)
	}
	switch {
	case is("context_length_exceeded"):
		*v = breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassContextLength}
	case is("content_filter", "content_policy_violation"):
		*v = breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassContentFiltered}
	case is("insufficient_quota"):
		// A 429 that waiting will not fix: the account is out of credit.
		v.Retryable = false
		v.Class = breaker.ClassRateLimited
	case is("rate_limit_exceeded", "rate_limit_error", "requests", "tokens"):
		v.Outcome, v.Retryable, v.Class = breaker.OutcomeFailure, true, breaker.ClassRateLimited
	case is("overloaded_error", "overloaded"):
		v.Outcome, v.Retryable, v.Class = breaker.OutcomeFailure, true, breaker.ClassOverloaded
	case typ == "invalid_request_error" && v.Outcome != breaker.OutcomeFailure:
		v.Class = breaker.ClassClientError
	case is("authentication_error", "permission_error"):
		v.Outcome, v.Retryable, v.Class = breaker.OutcomeFailure, false, breaker.ClassAuth
	}
}

// scrubMessage removes the caller's credentials from an upstream message. Providers
// print a masked key ("sk-...abcd") whose visible tail still identifies the key: such a
// message is withheld.
func (c *call) scrubMessage(msg string) string {
	for _, s := range c.secrets() {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	for _, s := range c.secrets() {
		if len(s) >= 8 && strings.Contains(msg, s[len(s)-4:]) {
			return withheld
		}
	}
	return msg
}

// scrubBytes removes the caller's credentials from a body.
func (c *call) scrubBytes(data []byte) []byte {
	for _, s := range c.secrets() {
		if len(s) >= 4 && bytes.Contains(data, []byte(s)) {
			data = bytes.ReplaceAll(data, []byte(s), []byte("[redacted]"))
		}
	}
	return data
}

// statusFor is the HTTP status that carries a failure's class to the caller's SDK when
// the upstream's own status does not (an error object inside a 200).
func statusFor(class breaker.Class) int {
	switch class {
	case breaker.ClassRateLimited:
		return http.StatusTooManyRequests
	case breaker.ClassOverloaded, breaker.ClassUnavailable:
		return http.StatusServiceUnavailable
	case breaker.ClassTimeout:
		return http.StatusGatewayTimeout
	case breaker.ClassConnection:
		return http.StatusBadGateway
	case breaker.ClassClientError, breaker.ClassContextLength, breaker.ClassContentFiltered:
		return http.StatusBadRequest
	case breaker.ClassAuth:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// errorResponse turns the upstream failure ae into the answer the caller's SDK decodes
// into its own error type: the upstream's status (or, for an error object inside a 200,
// the status of its class), an OpenAI-shaped error body, and infermesh's headers.
func (c *call) errorResponse(resp *http.Response, ae *APIError, v breaker.Verdict) *http.Response {
	status := ae.StatusCode
	if ae.InBody || status < 400 {
		status = statusFor(ae.verdict.Class)
	}
	if resp == nil {
		resp = &http.Response{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: make(http.Header), Request: c.req}
	}
	resp.StatusCode, resp.Status = status, strconv.Itoa(status)+" "+http.StatusText(status)
	resp.Header.Del("Content-Encoding")
	resp.Header.Set("Content-Type", "application/json")
	c.mark(resp.Header)
	class := v.Class
	if class == "" {
		class = ae.verdict.Class
	}
	resp.Header.Set(HeaderErrorClass, string(class))
	setBody(resp, ae.body)
	return resp
}
