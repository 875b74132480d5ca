// Package header reads HTTP headers by canonical key without canonicalizing it again.
//
// http.Header.Get canonicalizes its key on every call, which on the per-request path
// costs more than the lookup itself. Every key this project reads is a constant
// already in canonical form, and net/http stores received headers under canonical
// keys, so a plain map lookup finds what Get would.
package header

import "net/http"

// Get returns the first value of h under key, or "". key must be in canonical form
// (as http.CanonicalHeaderKey returns it); a key that is not finds nothing.
func Get(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
