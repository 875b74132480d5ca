package llmclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/infermesh/infermesh/internal/header"
	"github.com/infermesh/infermesh/internal/wire"
)

// requestInfo is what llmclient needs to know of a request body.
type requestInfo struct {
	model        string
	stream       bool
	includeUsage bool
	// streamOptions: the body has a stream_options key (of any value)
	streamOptions bool
	raw           []byte // the body as the caller sent it
}

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

// peekRequest reads the fields of a JSON request body that decide the call's policy. A
// body that is not JSON is sent as it is; the upstream will say what is wrong with it.
func peekRequest(body []byte) requestInfo {
	info := requestInfo{raw: body}
	var r wire.Request
	if len(body) == 0 || wire.ParseRequest(body, &r) != nil {
		return info
	}
	info.model = wire.Unquote(r.Model)
	info.stream, info.includeUsage, info.streamOptions = r.Stream, r.IncludeUsage, r.StreamOptions
	return info
}

// withIncludeUsage returns body with stream_options.include_usage set to true. When
// the body has no stream_options, the field is inserted and every other byte stays as
// it was; otherwise the object is re-encoded.
func withIncludeUsage(body []byte, hasStreamOptions bool) ([]byte, bool) {
	if !hasStreamOptions {
		i := bytes.IndexByte(body, '{')
		if i < 0 {
			return nil, false
		}
		out := make([]byte, 0, len(body)+40)
		out = append(out, body[:i+1]...)
		out = append(out, `"stream_options":{"include_usage":true}`...)
		if rest := bytes.TrimSpace(body[i+1:]); len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, body[i+1:]...), true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return nil, false
	}
	var opts map[string]json.RawMessage
	if json.Unmarshal(m["stream_options"], &opts) != nil || opts == nil {
		opts = map[string]json.RawMessage{}
	}
	opts["include_usage"] = json.RawMessage("true")
	ob, err := json.Marshal(opts)
	if err != nil {
		return nil, false
	}
	m["stream_options"] = ob
	out, err := json.Marshal(m)
	return out, err == nil
}

// operationPath is the API operation below the version prefix: "/chat/completions"
// for "/v1/chat/completions" and for Azure's "/openai/deployments/d/chat/completions".
func operationPath(path string) string {
	if i := strings.Index(path, "/v1/"); i >= 0 {
		return path[i+3:]
	}
	for _, op := range []string{"/chat/completions", "/completions", "/embeddings", "/models"} {
		if strings.HasSuffix(path, op) {
			return op
		}
	}
	return path
}

// operationName is the GenAI semantic-convention operation name of a path.
func operationName(path string) string {
	switch operationPath(path) {
	case "/chat/completions":
		return "chat"
	case "/completions":
		return "text_completion"
	case "/embeddings":
		return "embeddings"
	}
	return strings.Trim(strings.ReplaceAll(operationPath(path), "/", "."), ".")
}

func port(u *url.URL) int {
	if p := u.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		return n
	}
	if u.Scheme == "http" {
		return 80
	}
	return 443
}

var errTooLarge = errors.New("too large")

// readCapped reads all of r, failing with errTooLarge past limit bytes. size is the
// expected length (a Content-Length), or -1 when unknown: with it, the body is read
// into one allocation of the right size.
func readCapped(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, errTooLarge
	}
	if size >= 0 {
		data := make([]byte, size)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, err
		}
		var probe [1]byte
		if n, _ := r.Read(probe[:]); n > 0 {
			return nil, errors.New("body longer than its Content-Length")
		}
		return data, nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// bufferedBody is a fully read response body.
type bufferedBody struct {
	bytes.Reader
	data []byte
}

func (*bufferedBody) Close() error { return nil }

func setBody(resp *http.Response, data []byte) {
	b := &bufferedBody{data: data}
	b.Reset(data)
	resp.Body = b
	if resp.ContentLength != int64(len(data)) {
		resp.ContentLength = int64(len(data))
		resp.Header.Set("Content-Length", strconv.Itoa(len(data)))
	}
}

// mediaType is the media type of a Content-Type value, lower-cased only when needed:
// mime.ParseMediaType allocates a parameter map on every call.
func mediaType(h http.Header) string {
	ct := header.Get(h, "Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	for i := 0; i < len(ct); i++ {
		if 'A' <= ct[i] && ct[i] <= 'Z' {
			return strings.ToLower(ct)
		}
	}
	return ct
}

func isEventStream(resp *http.Response) bool {
	return mediaType(resp.Header) == "text/event-stream"
}
