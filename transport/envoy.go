package transport

import (
	"bytes"
	"io"
	"mime"
	"net/http"

	"github.com/infermesh/infermesh/internal/mesh"
)

// EnvoyPeekBytes is the most ParseEnvoy reads from a response body. Envoy's local replies are
// short single lines; reading a bounded prefix keeps ParseEnvoy cheap on any body.
const EnvoyPeekBytes = mesh.PeekBytes

// Envoy holds what an Envoy proxy (an Istio sidecar, a gateway) said about a response, from
// its local-reply body and its x-envoy-* headers. The zero value means "nothing
// Envoy-specific". It is the one model of mesh signals in this module: grpcinfer and tracing
// use the same type.
type Envoy = mesh.Envoy

// ParseEnvoy reads Envoy's signals from resp.
//
// Headers are always read. The body is examined only for local-reply shapes: status 503 or
// 504 with a text/plain content type. Then at most [EnvoyPeekBytes] bytes are read and put
// back: resp.Body is replaced by a reader that yields the peeked bytes followed by the rest of
// the original body, and closing it closes the original. The caller still reads the whole
// body. ParseEnvoy may block until those bytes arrive or the body ends; a body read error
// during the peek is returned again by the restored body. ParseEnvoy is not safe to call
// concurrently with reads of resp.Body.
func ParseEnvoy(resp *http.Response) Envoy {
	if resp == nil {
		return Envoy{}
	}
	// The names mesh asks for are canonical, as net/http stores them: index the map
	// directly instead of canonicalizing each name again on every response.
	h := resp.Header
	e := mesh.ParseHeaders(func(key string) string {
		if v := h[key]; len(v) > 0 {
			return v[0]
		}
		return ""
	})
	if mesh.IsLocalReplyStatus(resp.StatusCode) && isTextPlain(resp.Header.Get("Content-Type")) &&
		resp.Body != nil && resp.Body != http.NoBody {
		e.ParseLocalReply(resp.StatusCode, string(peekBody(resp)))
	}
	return e
}

func isTextPlain(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/plain"
}

// peekBody reads up to EnvoyPeekBytes of resp.Body and restores them in front of the rest.
func peekBody(resp *http.Response) []byte {
	buf := make([]byte, EnvoyPeekBytes)
	n, err := io.ReadFull(resp.Body, buf)
	buf = buf[:n]
	orig := resp.Body
	var rest io.Reader = orig
	switch err {
	case nil:
	case io.EOF, io.ErrUnexpectedEOF:
		rest = eofReader{} // the body ended within the peek
	default:
		rest = &errReader{err: err} // hand the read error to the caller, once the prefix is read
	}
	resp.Body = &restoredBody{Reader: io.MultiReader(bytes.NewReader(buf), rest), closer: orig}
	return buf
}

type restoredBody struct {
	io.Reader
	closer io.Closer
}

func (b *restoredBody) Close() error { return b.closer.Close() }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }
