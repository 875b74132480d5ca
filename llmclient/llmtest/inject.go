package llmtest

import (
	"bytes"
	"compress/gzip"
	"net"
	"net/http"
	"strconv"
)

// The bodies of Envoy's local replies, byte for byte (Envoy sends them as text/plain with
// no trailing newline).
const (
	envoyOverflowBody          = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
	envoyNoHealthyUpstreamBody = "no healthy upstream"
	envoyConnectFailureBody    = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	envoyUpstreamTimeoutBody   = "upstream request timeout"
)

// preResponseFault applies the faults that strike before the request is routed; it reports
// whether the response is done.
func (x *exchange) preResponseFault() bool {
	switch x.fault.Kind {
	case KindStatus:
		x.writeAPIError(statusError(x.fault))
	case KindEnvoyOverflow:
		x.w.Header().Set("X-Envoy-Overloaded", "true")
		x.envoyReply(http.StatusServiceUnavailable, envoyOverflowBody)
	case KindEnvoyNoHealthyUpstream:
		x.envoyReply(http.StatusServiceUnavailable, envoyNoHealthyUpstreamBody)
	case KindEnvoyConnectFailure:
		x.envoyReply(http.StatusServiceUnavailable, envoyConnectFailureBody)
	case KindEnvoyUpstreamTimeout:
		x.envoyReply(http.StatusGatewayTimeout, envoyUpstreamTimeoutBody)
	case KindReset:
		x.resetConn()
	case KindStallBeforeHeaders:
		return !x.stall()
	default:
		return false
	}
	return true
}

// envoyReply writes an Envoy local reply: text/plain, content-length, server: envoy (the
// HTTP server adds date).
func (x *exchange) envoyReply(status int, body string) {
	h := x.w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Server", "envoy")
	x.writeHeader(status)
	_, _ = x.w.Write([]byte(body))
}

// resetConn closes the connection under the request without a response. On TCP, linger 0
// makes the close send a reset and discard unsent data.
func (x *exchange) resetConn() {
	conn, _, err := x.rc.Hijack()
	if err != nil {
		x.abort() // the writer cannot hijack (HTTP/2, a recorder): abort the response instead
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// abort cuts the response where it stands: the HTTP server closes the connection without
// ending the body, so the client reads an unexpected EOF.
func (x *exchange) abort() {
	x.flush()
	panic(http.ErrAbortHandler)
}

// respondJSON writes a successful JSON response, shaped by the request's body fault.
func (x *exchange) respondJSON(body []byte) {
	h := x.w.Header()
	h.Set("Content-Type", "application/json")
	f := x.fault
	switch f.Kind {
	case KindStall:
		x.writeHeader(http.StatusOK)
		if !x.flush() || !x.stall() {
			return
		}
		_, _ = x.w.Write(body)
	case KindStreamReset:
		h.Set("Content-Length", strconv.Itoa(len(body)))
		x.writeHeader(http.StatusOK)
		_, _ = x.w.Write(body[:len(body)/2])
		x.abort()
	case KindErrorEvent, KindResponseFailed:
		e := errorBody(eventError(f))
		h.Set("Content-Length", strconv.Itoa(len(e)))
		x.writeHeader(http.StatusOK)
		_, _ = x.w.Write(e)
	case KindMalformedJSON, KindTruncate:
		half := body[:len(body)/2]
		h.Set("Content-Length", strconv.Itoa(len(half)))
		x.writeHeader(http.StatusOK)
		_, _ = x.w.Write(half)
	case KindOversized:
		x.writeOversized(body, oversize(f))
	case KindGzipBomb:
		defer x.gzipBody()()
		x.writeOversized(body, max(oversize(f)-len(bytes.TrimRight(body, "\n")), 0))
	default:
		h.Set("Content-Length", strconv.Itoa(len(body)))
		x.writeHeader(http.StatusOK)
		_, _ = x.w.Write(body)
	}
}

// oversize returns the padding of a KindOversized fault.
func oversize(f Fault) int {
	if f.Size == 0 {
		return DefaultOversizedBytes
	}
	return f.Size
}

// writeOversized writes body (without its final newline) with pad bytes of whitespace before
// its closing brace, in pieces, so that the padding is never held in memory whole.
func (x *exchange) writeOversized(body []byte, pad int) {
	body = bytes.TrimRight(body, "\n")
	x.w.Header().Set("Content-Length", strconv.Itoa(len(body)+pad))
	x.writeHeader(http.StatusOK)
	if _, err := x.w.Write(body[:len(body)-1]); err != nil {
		return
	}
	spaces := bytes.Repeat([]byte{' '}, min(pad, 32<<10))
	for pad > 0 {
		n := min(pad, len(spaces))
		if _, err := x.w.Write(spaces[:n]); err != nil {
			return
		}
		pad -= n
	}
	_, _ = x.w.Write(body[len(body)-1:])
}

// gzipWriter is the response writer of a KindGzipBomb response: it sends the body
// gzip-encoded.
type gzipWriter struct {
	http.ResponseWriter
	zw *gzip.Writer
}

func (g *gzipWriter) WriteHeader(code int) {
	h := g.Header()
	h.Del("Content-Length")
	h.Set("Content-Encoding", "gzip")
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipWriter) Write(b []byte) (int, error) { return g.zw.Write(b) }

// gzipBody makes the rest of the response gzip-encoded (at the fastest level: the padding
// compresses about 800 to 1 anyway) and returns the func that ends the encoding. Call it
// before the status is written.
func (x *exchange) gzipBody() (end func()) {
	g := &gzipWriter{ResponseWriter: x.w}
	g.zw, _ = gzip.NewWriterLevel(x.w, gzip.BestSpeed) // a valid level cannot fail
	x.w = g
	return func() { _ = g.zw.Close() }
}
