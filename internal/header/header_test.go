package header

import (
	"net/http"
	"testing"
)

func TestGetMatchesHeaderGetForCanonicalKeys(t *testing.T) {
	h := http.Header{}
	h.Set("x-envoy-upstream-service-time", "12")
	h.Add("Retry-After", "3")
	h.Add("Retry-After", "4")
	h["Empty"] = []string{}
	for _, key := range []string{"X-Envoy-Upstream-Service-Time", "Retry-After", "Empty", "Missing"} {
		if got, want := Get(h, key), h.Get(key); got != want {
			t.Errorf("Get(%q) = %q, want %q", key, got, want)
		}
	}
	if got := Get(h, "retry-after"); got != "" {
		t.Errorf("a non-canonical key found %q; it must find nothing", got)
	}
	if got := Get(nil, "Retry-After"); got != "" {
		t.Errorf("nil header: %q", got)
	}
}
