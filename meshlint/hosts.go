package meshlint

import "strings"

// publicLLMHosts are the API hosts of public LLM providers: a ServiceEntry, route or
// DestinationRule for one of them concerns LLM calls without further proof. More hosts
// are named with Options.LLMHosts (-llm-host).
var publicLLMHosts = []string{
	"api.openai.com",
	"*.openai.azure.com",
	"*.services.ai.azure.com",
	"api.anthropic.com",
	"generativelanguage.googleapis.com",
	"api.mistral.ai",
	"api.groq.com",
	"api.together.xyz",
	"api.deepseek.com",
	"api.fireworks.ai",
	"openrouter.ai",
	"api.cohere.com",
	"api.x.ai",
}

// expandHost writes an Istio host as the FQDN Istio resolves it to: a short name (no
// dot) is a Kubernetes service of the resource's namespace.
func expandHost(h, ns string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if h == "" || h == "*" || strings.Contains(h, ".") {
		return h
	}
	return h + "." + ns + ".svc.cluster.local"
}

func expandHosts(hs []string, ns string) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, expandHost(h, ns))
	}
	return out
}

// hostsOverlap reports whether two Istio host names can name the same host; either may
// be a wildcard such as "*.openai.azure.com", or "*".
func hostsOverlap(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	switch {
	case a == b || a == "*" || b == "*":
		return true
	case strings.HasPrefix(a, "*.") && strings.HasSuffix(b, a[1:]):
		return true
	case strings.HasPrefix(b, "*.") && strings.HasSuffix(a, b[1:]):
		return true
	}
	return false
}

// anyOverlap reports whether a host of hs overlaps a pattern of patterns.
func anyOverlap(hs, patterns []string) bool {
	for _, h := range hs {
		for _, p := range patterns {
			if hostsOverlap(h, p) {
				return true
			}
		}
	}
	return false
}
