package llmclient

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/transport"
)

// errorBody is the OpenAI error shape. Code is a string in OpenAI's API and a number in
// some compatible servers; both are kept as text.
type errorBody struct {
	Error *struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	} `json:"error"`
}

// parseErrorBody extracts the error object of an OpenAI-shaped error body, if any.
func parseErrorBody(data []byte) (typ, code, msg string, ok bool) {
	var eb errorBody
	if json.Unmarshal(data, &eb) != nil || eb.Error == nil {
		return "", "", "", false
	}
	code = strings.Trim(string(eb.Error.Code), `"`)
	if code == "null" {
		code = ""
	}
	return eb.Error.Type, code, eb.Error.Message, true
}

// newAPIError builds the typed error of a response whose (already read) body is data.
// secret is the caller's bearer token, scrubbed from any message.
func newAPIError(resp *http.Response, data []byte, env transport.Envoy, inBody bool, secret string) *APIError {
	e := &APIError{StatusCode: resp.StatusCode, Envoy: env, InBody: inBody}
	if inBody {
		// A 200 is a success to the transport classifier; an error inside it is a
		// failure of the call, retryable unless its type says otherwise.
		e.verdict = breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassServerError}
	} else {
		e.verdict = transport.ClassifyResponse(resp)
		e.RetryAfter = e.verdict.RetryAfter
	}
	typ, code, msg, ok := parseErrorBody(data)
	if ok {
		e.Type, e.Code = typ, code
		if e.verdict.Class != breaker.ClassAuth && resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			e.Message = scrub(msg, secret)
		}
		refine(&e.verdict, typ, code)
	}
	return e
}

// refine adjusts a status-based verdict with what the error object says.
func refine(v *breaker.Verdict, typ, code string) {
	switch {
	case code == "context_length_exceeded" || typ == "context_length_exceeded":
		*v = breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassContextLength}
	case code == "content_filter" || code == "content_policy_violation":
		*v = breaker.Verdict{Outcome: breaker.OutcomeExcluded, Class: breaker.ClassContentFiltered}
	case code == "insufficient_quota" || typ == "insufficient_quota":
		// A 429 that waiting will not fix: the account is out of credit.
		v.Retryable = false
		v.Class = breaker.ClassRateLimited
	case typ == "overloaded_error" || code == "overloaded" || typ == "overloaded":
		v.Outcome, v.Retryable, v.Class = breaker.OutcomeFailure, true, breaker.ClassOverloaded
	case typ == "invalid_request_error" && v.Outcome != breaker.OutcomeFailure:
		v.Class = breaker.ClassClientError
	case typ == "authentication_error" || typ == "permission_error":
		v.Outcome, v.Retryable, v.Class = breaker.OutcomeFailure, false, breaker.ClassAuth
	}
}

// scrub removes the caller's secret, and anything that looks like a key derived from
// it, from an upstream message.
func scrub(msg, secret string) string {
	if secret != "" && strings.Contains(msg, secret) {
		msg = strings.ReplaceAll(msg, secret, "[redacted]")
	}
	if len(secret) >= 8 && strings.Contains(msg, secret[len(secret)-4:]) {
		// Providers print a masked key ("sk-...abcd"); its visible tail still
		// identifies the key, so the message is dropped.
		return "[message withheld: it referred to the API key]"
	}
	return msg
}

// scrubBody removes the caller's secret from an error response before the caller's
// client decodes it: some servers echo the key they rejected.
func scrubBody(data []byte, status int, secret string) []byte {
	if status < 400 || len(secret) < 8 || !bytes.Contains(data, []byte(secret)) {
		return data
	}
	return bytes.ReplaceAll(data, []byte(secret), []byte("[redacted]"))
}
