package llmclient

import (
	"net/http"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/wire"
	"github.com/infermesh/infermesh/transport"
)

// inspectBody judges a complete 2xx body: an error object inside it is a failure (the
// business error a mesh cannot see), malformed JSON is a failure, and otherwise its
// model, id, finish reasons and usage are recorded.
func (c *call) inspectBody(resp *http.Response, data []byte, env transport.Envoy) error {
	mt := mediaType(resp.Header)
	if mt != "application/json" && !(mt == "" && len(data) > 0 && data[0] == '{') {
		return nil // audio, files and other non-JSON answers are passed through
	}
	var f wire.Fields
	if err := wire.Parse(data, &f); err != nil {
		return malformed(err)
	}
	if f.Error.Present {
		return c.eventError(&f, env)
	}
	c.obs.ObserveJSON(data)
	return nil
}

// eventError is the typed error of an error object found inside a 200 body or stream.
func (c *call) eventError(f *wire.Fields, env transport.Envoy) *APIError {
	e := &APIError{
		StatusCode: http.StatusOK,
		InBody:     true,
		Envoy:      env,
		Type:       wire.Unquote(f.Error.Type),
		Code:       wire.Unquote(f.Error.Code),
		verdict:    breaker.Verdict{Outcome: breaker.OutcomeFailure, Retryable: true, Class: breaker.ClassServerError},
	}
	refine(&e.verdict, e.Type, e.Code)
	if e.verdict.Class != breaker.ClassAuth {
		e.Message = scrub(wire.Unquote(f.Error.Message), c.secret)
	}
	return e
}
