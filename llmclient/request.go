package llmclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// readRequestBody reads and closes the caller's body, within limit.
func readRequestBody(req *http.Request, limit int64) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	data, err := readCapped(req.Body, req.ContentLength, limit)
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("llmclient: request body exceeds MaxRequestBytes (%d bytes)", limit)
	}
	if err != nil {
		return nil, fmt.Errorf("llmclient: read request body: %w", err)
	}
	return data, nil
}

var errTooLarge = errors.New("too large")

// readCapped reads all of r, failing with errTooLarge past limit bytes. size is the
// expected length (a Content-Length), or -1 when unknown. The buffer never grows past
// limit+1 bytes, whatever the body claims or sends.
func readCapped(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, errTooLarge
	}
	initial := int64(512) // a guess for a body of unknown length
	if size >= 0 {
		initial = size + 1 // one more byte, to see the end
	}
	buf := make([]byte, 0, min(initial, limit+1))
	for {
		if len(buf) == cap(buf) {
			buf, _ = growCapped(buf, 1, limit+1) // room for the byte that says "too large"
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// appendCapped appends data to buf unless the result would pass limit bytes; its
// capacity never passes limit either.
func appendCapped(buf, data []byte, limit int64) ([]byte, bool) {
	buf, ok := growCapped(buf, len(data), limit)
	if !ok {
		return buf, false
	}
	return append(buf, data...), true
}

// growCapped makes room for n more bytes in buf, doubling its capacity but never past
// limit; it reports false when len(buf)+n passes limit.
func growCapped(buf []byte, n int, limit int64) ([]byte, bool) {
	need := int64(len(buf) + n)
	if need > limit {
		return buf, false
	}
	if need <= int64(cap(buf)) {
		return buf, true
	}
	grown := make([]byte, len(buf), min(max(2*int64(cap(buf)), need), limit))
	copy(grown, buf)
	return grown, true
}

// bufferedBody is a fully read response body.
type bufferedBody struct {
	bytes.Reader
	data []byte
}

func (*bufferedBody) Close() error { return nil }

// setBody replaces resp's body with data, held in memory.
func setBody(resp *http.Response, data []byte) {
	b := &bufferedBody{data: data}
	b.Reset(data)
	resp.Body = b
	if resp.ContentLength != int64(len(data)) || resp.Uncompressed {
		resp.ContentLength = int64(len(data))
		resp.Header.Set("Content-Length", strconv.Itoa(len(data)))
	}
	resp.Uncompressed = false
}

// mediaType is the lower-cased media type of a Content-Type value.
func mediaType(h http.Header) string {
	ct, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.ToLower(strings.TrimSpace(ct))
}

func isEventStream(resp *http.Response) bool {
	return mediaType(resp.Header) == "text/event-stream"
}

// headerCopy returns a copy of h with room for extra more keys. The values are shared,
// capped at their length, so that an Add to the copy never writes into h's arrays: a
// RoundTripper must not change its caller's request, and copying every value of every
// call would cost more than the call's own headers.
func headerCopy(h http.Header, extra int) http.Header {
	out := make(http.Header, len(h)+extra)
	for k, v := range h {
		out[k] = v[:len(v):len(v)]
	}
	return out
}
