package llmtest

import (
	"net/http"
	"time"
)

// A Request is the record of one request the server received, faulted or not.
type Request struct {
	// Seq is the request's arrival number, from 1. Response ids derive from it: the
	// response to request 3 has id "chatcmpl-3" (chat), "cmpl-3" (completions) or "resp_3"
	// (responses), and every response from the server itself carries x-request-id "req_3".
	Seq int
	// Time is when the request arrived (from the fake clock under testing/synctest).
	Time time.Time
	// Method and Path are the request's method and URL path; RawQuery is its query string.
	Method, Path, RawQuery string
	// Header is a copy of the request headers, such as Authorization or the
	// X-Stainless-Retry-Count that openai-go sends with each attempt.
	Header http.Header
	// Body is the request body, gzip-decoded if it was sent with Content-Encoding: gzip, and
	// cut at the body limit ([WithMaxBodyBytes]) if it was larger.
	Body []byte
	// Fault is the fault chosen for the request (the zero Fault if none). A request whose
	// body could not be read (too large, bad encoding) gets no fault. Faults that shape a
	// successful response (KindStall, KindStreamReset, KindErrorEvent, KindMalformedJSON,
	// KindOversized, KindTruncate, KindResponseFailed, KindGzipBomb) do not apply to a request
	// that fails validation or that a rate limit refuses: it gets its 4xx error.
	Fault Fault
	// Phase is the name of the phase that was active when the request arrived.
	Phase string
}

// Requests returns the records of every request received so far (the most recent ones if
// [WithMaxRecords] is set), in arrival order. The
// records are copies: changing them does not change the server's.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.records))
	for i, r := range s.records {
		r.Header = r.Header.Clone()
		r.Body = append([]byte(nil), r.Body...)
		r.Fault.Header = r.Fault.Header.Clone()
		out[i] = r
	}
	return out
}

// admit numbers and records a request and, if decide, picks its fault.
func (s *Server) admit(rec Request, decide bool) Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	rec.Seq = s.seq
	rec.Phase = s.script.phase.Name
	if decide {
		rec.Fault = s.script.next(rec.Path)
	}
	if m := s.cfg.maxRecords; m > 0 && len(s.records) >= m {
		clear(s.records[:len(s.records)-m+1]) // drop references held by the backing array
		s.records = s.records[len(s.records)-m+1:]
	}
	s.records = append(s.records, rec)
	return rec
}

// SetPhase switches the server to phase p at once: requests that arrive from now on see its
// rules (with fresh counts); requests already admitted keep their fault. Faults queued by
// Enqueue stay queued. It panics if p is invalid (see [Phase.Validate]).
func (s *Server) SetPhase(p Phase) {
	if err := p.Validate(); err != nil {
		panic(err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script.setPhase(p)
}

// SetRules is SetPhase with an unnamed phase holding rules.
func (s *Server) SetRules(rules ...Rule) {
	s.SetPhase(Phase{Rules: rules})
}

// Enqueue queues faults for the next requests, whatever their path: the next request gets
// faults[0], the one after faults[1], and so on, before the phase's rules are tried. Use
// [KindNone] (the zero Fault) for a request that should succeed in the middle of a script.
// It panics if a fault is invalid (see [Fault.Validate]).
func (s *Server) Enqueue(faults ...Fault) {
	for _, f := range faults {
		if err := f.Validate(); err != nil {
			panic(err.Error())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range faults {
		f.Header = f.Header.Clone()
		s.script.queue = append(s.script.queue, f)
	}
}
