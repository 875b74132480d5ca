package llmtest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// FuzzRequest feeds arbitrary bodies to the request parser and validator of each POST
// endpoint and checks that every answer is well-formed: a 400 or 413 with an OpenAI-shaped
// error object, or a 200 whose JSON or SSE parses.
func FuzzRequest(f *testing.F) {
	for _, seed := range []struct {
		path uint8
		body string
	}{
		{0, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{0, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":2,"messages":[{"role":"system","content":[{"type":"text","text":"a b"}]}]}`},
		{0, `{"model":"m","messages":[{"role":"robot"}]}`},
		{0, `{"model":4}`},
		{0, `{"model":"m","messages":[]`},
		{1, `{"model":"m","input":["a","b"],"dimensions":3,"encoding_format":"base64"}`},
		{1, `{"model":"m","input":[[1,2],[3]]}`},
		{1, `{"model":"m","input":[1,"a"]}`},
		{2, `{"model":"m","prompt":"x","stream":true}`},
		{2, `{"model":"m","prompt":[[1],[2,3]],"max_tokens":1e3}`},
		{2, `null`},
		{2, `"just a string"`},
	} {
		f.Add(seed.path, []byte(seed.body))
	}
	paths := []string{llmtest.PathChatCompletions, llmtest.PathEmbeddings, llmtest.PathCompletions}
	f.Fuzz(func(t *testing.T, path uint8, body []byte) {
		srv := llmtest.NewUnstartedServer(llmtest.WithMaxBodyBytes(64<<10), llmtest.WithChunks(2, "a "))
		defer srv.Close()
		p := paths[int(path)%len(paths)]
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, p, bytes.NewReader(body)))
		out := rec.Body.Bytes()
		switch rec.Code {
		case http.StatusOK:
			if rec.Header().Get("Content-Type") == "application/json" {
				if !json.Valid(out) {
					t.Fatalf("200 with invalid JSON %q", out)
				}
				return
			}
			s := string(out)
			if !strings.HasSuffix(s, "data: [DONE]\n\n") {
				t.Fatalf("stream without [DONE]: %q", s)
			}
			for _, d := range sseData(s) {
				if d != "[DONE]" && !json.Valid([]byte(d)) {
					t.Fatalf("stream event %q is not JSON", d)
				}
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e struct {
				Error *struct {
					Message *string `json:"message"`
					Type    *string `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			dec := json.NewDecoder(bytes.NewReader(out))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil || e.Error == nil || e.Error.Message == nil || *e.Error.Message == "" ||
				e.Error.Type == nil || *e.Error.Type != "invalid_request_error" {
				t.Fatalf("status %d with error body %q (%v)", rec.Code, out, err)
			}
		default:
			t.Fatalf("status %d for %s %q", rec.Code, p, body)
		}
	})
}
