package llmtest

import (
	"net/http"
	"strconv"
)

// apiError is the OpenAI error object. Empty Param and Code are written as null.
type apiError struct {
	status  int
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

// codeOrType returns e's code, or its type if it has none: the code of a Responses error
// event or failed response, which has no type field.
func (e *apiError) codeOrType() string {
	if e.Code != nil {
		return *e.Code
	}
	return e.Type
}

// newAPIError returns an error object; empty param and code become null.
func newAPIError(status int, typ, message, param, code string) *apiError {
	e := &apiError{status: status, Type: typ, Message: message}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return e
}

// invalidRequest returns a 400 invalid_request_error.
func invalidRequest(message, param, code string) *apiError {
	return newAPIError(http.StatusBadRequest, "invalid_request_error", message, param, code)
}

// errorBody returns {"error":{...}} followed by a newline.
func errorBody(e *apiError) []byte {
	return append(mustJSON(struct {
		Error *apiError `json:"error"`
	}{e}), '\n')
}

// writeAPIError writes e as an OpenAI-shaped JSON error response.
func (x *exchange) writeAPIError(e *apiError) {
	body := errorBody(e)
	h := x.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	x.writeHeader(e.status)
	_, _ = x.w.Write(body)
}

// statusError returns the error object of a KindStatus fault.
func statusError(f Fault) *apiError {
	code := f.Status
	if code == 0 {
		code = http.StatusInternalServerError
	}
	var msg, typ, ecode string
	switch code {
	case http.StatusTooManyRequests:
		msg, typ, ecode = "Rate limit reached for requests", "requests", "rate_limit_exceeded"
	case http.StatusInternalServerError:
		msg, typ = "The server had an error while processing your request. Sorry about that!", "server_error"
	case http.StatusBadGateway:
		msg, typ = "Bad gateway.", "server_error"
	case http.StatusServiceUnavailable:
		msg, typ = "The server is overloaded or not ready yet.", "server_error"
	case http.StatusGatewayTimeout:
		msg, typ = "Gateway timeout.", "server_error"
	default:
		msg, typ = http.StatusText(code), "server_error"
		if code < 500 {
			typ = "invalid_request_error"
		}
		if msg == "" {
			msg = "Error " + strconv.Itoa(code)
		}
	}
	return overrideError(newAPIError(code, typ, msg, "", ecode), f)
}

// eventError returns the error object of a KindErrorEvent fault.
func eventError(f Fault) *apiError {
	return overrideError(newAPIError(http.StatusOK, "overloaded_error", "Overloaded", "", ""), f)
}

// failedError returns the error object of a KindResponseFailed fault.
func failedError(f Fault) *apiError {
	return overrideError(newAPIError(http.StatusOK, "server_error",
		"The server had an error while processing your request. Sorry about that!", "", "server_error"), f)
}

// overrideError applies the Message, Type, Code and Param of f to e.
func overrideError(e *apiError, f Fault) *apiError {
	if f.Message != "" {
		e.Message = f.Message
	}
	if f.Type != "" {
		e.Type = f.Type
	}
	if f.Param != "" {
		e.Param = &f.Param
	}
	if f.Code != "" {
		e.Code = &f.Code
	}
	return e
}
