package transport

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Credentials names the request headers that carry credentials. One list serves every
// rule about secrets: what is scrubbed from errors, what identifies a tenant (so that one
// tenant's cached answer never reaches another), what a fallback on another host never
// receives, and what a redirect to another host drops. net/http drops only Authorization
// and Cookie on such a redirect; the keys LLM providers and gateways use go further.
type Credentials []string

// DefaultCredentials returns the credential headers of the common LLM providers and
// gateways: Authorization (OpenAI and compatible servers), api-key (Azure OpenAI),
// x-api-key (Anthropic and many gateways), Ocp-Apim-Subscription-Key (Azure API
// Management), X-Goog-Api-Key (Google) and Proxy-Authorization.
func DefaultCredentials() Credentials {
	return Credentials{"Authorization", "Api-Key", "X-Api-Key", "Ocp-Apim-Subscription-Key", "X-Goog-Api-Key", "Proxy-Authorization"}
}

// Canonical returns c with every name in canonical form, without duplicates or empty
// names, or an error naming an invalid one.
func (c Credentials) Canonical() (Credentials, error) {
	out := make(Credentials, 0, len(c))
	for _, name := range c {
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, errors.New("transport: credential header name " + quote(name) + " is not a header name")
		}
		name = http.CanonicalHeaderKey(name)
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// Has reports whether name (any case) is one of c.
func (c Credentials) Has(name string) bool {
	name = http.CanonicalHeaderKey(name)
	return slices.Contains(c, name)
}

// Secrets returns the secret parts of the credential values in h: the token after a
// scheme such as "Bearer " and the whole value, so that an upstream's echo of either can
// be scrubbed.
func (c Credentials) Secrets(h http.Header) []string {
	var out []string
	for _, name := range c {
		for _, v := range h.Values(name) {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			out = append(out, v)
			if _, tok, ok := strings.Cut(v, " "); ok && strings.TrimSpace(tok) != "" {
				out = append(out, strings.TrimSpace(tok))
			}
		}
	}
	return out
}

// Fingerprint identifies the tenant of a request by its credentials: a SHA-256 over the
// credential headers present in h (names and values), or "" when there are none. It is
// safe to keep and to compare; it cannot be turned back into a key.
func (c Credentials) Fingerprint(h http.Header) string {
	sum := sha256.New()
	found := false
	for _, name := range c {
		for _, v := range h.Values(name) {
			found = true
			sum.Write([]byte(name))
			sum.Write([]byte{0})
			sum.Write([]byte(v))
			sum.Write([]byte{0})
		}
	}
	if !found {
		return ""
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// Strip deletes every credential header from h.
func (c Credentials) Strip(h http.Header) {
	for _, name := range c {
		h.Del(name)
	}
}

// CheckRedirect is an http.Client CheckRedirect function: it follows up to 10 redirects,
// as net/http does, and drops every credential header from a redirect to another host
// (or scheme), so that a key never follows a redirect away from the host it was meant
// for.
func (c Credentials) CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	first := via[0].URL
	if req.URL.Host != first.Host || req.URL.Scheme != first.Scheme {
		c.Strip(req.Header)
	}
	return nil
}
