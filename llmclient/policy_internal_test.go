package llmclient

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// answer200 answers every request with an empty chat completion.
type answer200 struct{}

func (answer200) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"choices":[]}`)), Request: r}, nil
}

// TestPerHostStateBounded: one breaker policy per route and host is kept, but no more
// than MaxUpstreams of them once calls to many hosts have ended.
func TestPerHostStateBounded(t *testing.T) {
	tr, err := NewTransport(Config{Base: answer200{}, MaxUpstreams: 8})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tr}
	for i := range 50 {
		resp, err := hc.Post("http://host-"+strconv.Itoa(i)+".invalid/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n := tr.policies.len(); n > 8 {
			t.Fatalf("%d policies held after %d hosts, bound 8", n, i+1)
		}
	}
	// The host called last still has its breaker; the first one's was dropped.
	if tr.policies.get(tr.cfg.route("/v1/chat/completions"), "host-49.invalid") == nil ||
		tr.policies.get(tr.cfg.route("/v1/chat/completions"), "host-0.invalid") != nil {
		t.Error("the least recently used policy was not the one dropped")
	}
}
