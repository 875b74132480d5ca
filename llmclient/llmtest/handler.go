package llmtest

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The API paths the server answers.
const (
	PathChatCompletions = "/v1/chat/completions"
	PathCompletions     = "/v1/completions"
	PathEmbeddings      = "/v1/embeddings"
	PathModels          = "/v1/models"
	PathResponses       = "/v1/responses"
)

// exchange is one request being answered.
type exchange struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	rc      *http.ResponseController
	rec     Request
	fault   Fault
	body    []byte
	created int64
}

// serveHTTP records the request, picks its fault and answers it.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	tracked := s.enter()
	if tracked {
		defer s.active.Done()
	}
	body, bodyErr := s.readBody(w, r)
	rec := s.admit(Request{
		Time:     arrived,
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     body,
	}, bodyErr == nil && tracked)
	x := &exchange{
		s: s, w: w, r: r, rc: http.NewResponseController(w),
		rec: rec, fault: rec.Fault, body: body, created: arrived.Unix(),
	}
	switch {
	case !tracked:
		x.writeAPIError(newAPIError(http.StatusServiceUnavailable, "server_error", "llmtest: the server is closed", "", ""))
		return
	case bodyErr != nil:
		x.writeAPIError(bodyErr)
		return
	}
	if !x.pause(s.draw(s.cfg.latency)) {
		return
	}
	if x.preResponseFault() {
		return
	}
	x.route()
}

// readBody reads the whole request body, gzip-decoded, up to the configured limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	limit := s.cfg.maxBody
	var rd io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, invalidRequest("The request body could not be decoded as gzip.", "", "")
		}
		rd = io.LimitReader(zr, limit+1)
	default:
		return nil, newAPIError(http.StatusUnsupportedMediaType, "invalid_request_error",
			fmt.Sprintf("Unsupported Content-Encoding %q; use gzip or none.", enc), "", "")
	}
	b, err := io.ReadAll(rd)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge) || int64(len(b)) > limit:
		return b[:min(int64(len(b)), limit)], newAPIError(http.StatusRequestEntityTooLarge, "invalid_request_error",
			fmt.Sprintf("The request body is larger than the limit of %d bytes.", limit), "", "request_too_large")
	case err != nil:
		return b, invalidRequest("The request body could not be read: "+err.Error(), "", "")
	}
	return b, nil
}

// pause waits d and reports whether to go on: false if the client gave up or the server
// closed first. d <= 0 returns true at once.
func (x *exchange) pause(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-x.r.Context().Done():
	case <-x.s.done:
	}
	return false
}

// stall waits as a stall fault says and reports whether to go on.
func (x *exchange) stall() bool {
	if x.fault.Duration > 0 {
		return x.pause(x.fault.Duration)
	}
	select {
	case <-x.r.Context().Done():
	case <-x.s.done:
	}
	return false
}

// writeHeader adds the server's and the fault's headers, then writes the status.
func (x *exchange) writeHeader(status int) {
	h := x.w.Header()
	if h.Get("Server") != "envoy" {
		h.Set("X-Request-Id", "req_"+strconv.Itoa(x.rec.Seq))
	}
	f := x.fault
	if f.RetryAfter > 0 {
		setRetryAfter(h, f.RetryAfter, f.RetryAfterFormat)
	}
	if f.UpstreamServiceTime > 0 {
		h.Set("X-Envoy-Upstream-Service-Time", strconv.FormatInt(f.UpstreamServiceTime.Milliseconds(), 10))
	}
	if f.AttemptCount > 0 {
		h.Set("X-Envoy-Attempt-Count", strconv.Itoa(f.AttemptCount))
	}
	for k, v := range f.Header {
		h[k] = append([]string(nil), v...)
	}
	x.w.WriteHeader(status)
}

// setRetryAfter writes a retry hint of d in the given format.
func setRetryAfter(h http.Header, d time.Duration, format RetryAfterFormat) {
	secs := strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
	ms := strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10)
	switch format {
	case RetryAfterSeconds:
		h.Set("Retry-After", secs)
	case RetryAfterDate:
		at := time.Now().Add(d + time.Second - 1).Truncate(time.Second)
		h.Set("Retry-After", at.UTC().Format(http.TimeFormat))
	case RetryAfterMillis:
		h.Set("Retry-After-Ms", ms)
	case RetryAfterSecondsAndMillis:
		h.Set("Retry-After", secs)
		h.Set("Retry-After-Ms", ms)
	}
}

// flush sends what was written so far; it reports false if the client is gone.
func (x *exchange) flush() bool {
	if g, ok := x.w.(*gzipWriter); ok && g.zw.Flush() != nil {
		return false
	}
	err := x.rc.Flush()
	return err == nil || errors.Is(err, http.ErrNotSupported)
}

// route answers the request by method and path.
func (x *exchange) route() {
	path := x.r.URL.Path
	switch {
	case path == PathChatCompletions:
		x.post(x.chat)
	case path == PathCompletions:
		x.post(x.completions)
	case path == PathEmbeddings:
		x.post(x.embeddings)
	case path == PathResponses:
		x.post(x.responses)
	case path == PathModels:
		x.get(x.listModels)
	case strings.HasPrefix(path, PathModels+"/") && len(path) > len(PathModels)+1:
		x.get(x.getModel)
	default:
		x.writeAPIError(newAPIError(http.StatusNotFound, "invalid_request_error",
			fmt.Sprintf("Invalid URL (%s %s)", x.r.Method, path), "", ""))
	}
}

func (x *exchange) post(serve func()) { x.method(http.MethodPost, serve) }
func (x *exchange) get(serve func())  { x.method(http.MethodGet, serve) }

func (x *exchange) method(want string, serve func()) {
	if x.r.Method != want {
		x.w.Header().Set("Allow", want)
		x.writeAPIError(newAPIError(http.StatusMethodNotAllowed, "invalid_request_error",
			fmt.Sprintf("Method %s is not allowed for %s; use %s.", x.r.Method, x.r.URL.Path, want), "", ""))
		return
	}
	serve()
}
