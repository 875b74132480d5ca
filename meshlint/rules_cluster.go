package meshlint

import (
	"fmt"
	"slices"
	"strings"
)

// connChurn: conn-churn. Each new upstream connection to an LLM API costs a TCP and a
// TLS handshake, and a long stream holds its connection anyway; closing connections
// after a handful of requests only adds handshakes to the tail.
func (c *checker) connChurn(cl *cluster) []Finding {
	n := cl.maxRequestsPerConnection
	if n.v < 1 || n.v > 100 {
		return nil
	}
	return []Finding{finding(RuleConnChurn, SeverityWarning, n.at,
		fmt.Sprintf("maxRequestsPerConnection %d%s closes each upstream connection to %s after %d requests: every new one costs a TCP and TLS handshake (often 100 ms or more to a public API), paid by the calls that open it.",
			n.v, n.origin(), cl.host, n.v),
		"Remove maxRequestsPerConnection (Istio's default is unlimited) or raise it well above 100, for example 10000; rotate connections with tcp.maxConnectionDuration or an idle timeout instead.")}
}

// poolOverflow: pool-overflow. Requests beyond the sidecar's circuit-breaker limits get
// a local 503 with x-envoy-overloaded (UO): max_requests bounds requests in flight,
// max_pending_requests those waiting for a connection, which is every request of a
// burst while connections are being opened.
func (c *checker) poolOverflow(cl *cluster) []Finding {
	conc := c.app.Concurrency
	if conc <= 0 {
		return nil
	}
	var out []Finding
	if mr := cl.maxRequests; mr.v > 0 && mr.v < conc {
		out = append(out, finding(RulePoolOverflow, SeverityError, mr.at,
			fmt.Sprintf("http2MaxRequests %d%s is below the app's concurrency of %d: the sidecar answers 503 UO (overflow, x-envoy-overloaded) to the calls beyond it in flight to %s.",
				mr.v, mr.origin(), conc, cl.host),
			fmt.Sprintf("Raise http2MaxRequests to at least %d, or lower the app's concurrency.", conc)))
	}
	mp, mc := cl.maxPending, cl.maxConnections
	if mp.v <= 0 || mp.v >= conc {
		return out
	}
	if mc.v > 0 && mc.v+mp.v < conc {
		return append(out, finding(RulePoolOverflow, SeverityError, mp.at,
			fmt.Sprintf("http1MaxPendingRequests %d%s plus tcp.maxConnections %d%s is below the app's concurrency of %d: over HTTP/1.1 the calls beyond both to %s get 503 UO (overflow).",
				mp.v, mp.origin(), mc.v, mc.origin(), conc, cl.host),
			fmt.Sprintf("Raise http1MaxPendingRequests to at least %d.", conc)))
	}
	return append(out, finding(RulePoolOverflow, SeverityWarning, mp.at,
		fmt.Sprintf("http1MaxPendingRequests %d%s is below the app's concurrency of %d: requests wait as pending while the sidecar opens connections, so a burst of %d calls to %s overflows with 503 UO.",
			mp.v, mp.origin(), conc, conc, cl.host),
		fmt.Sprintf("Raise http1MaxPendingRequests to at least %d.", conc)))
}

// outlierEjection: outlier-ejection. Envoy may eject max(1, endpoints ×
// maxEjectionPercent / 100) endpoints, at least one whatever the percentage. With
// panic mode off (healthy_panic_threshold 0, which Istio sets from minHealthPercent,
// default 0) a pool with every endpoint ejected answers "no healthy upstream".
func (c *checker) outlierEjection(cl *cluster) []Finding {
	if !cl.outlier.v || cl.minHealth.v > 0 {
		return nil
	}
	me, mh := cl.maxEjection, cl.minHealth
	fix := "Set outlierDetection.minHealthPercent (for example 50) so that Envoy keeps balancing over every endpoint when too few are healthy, and keep maxEjectionPercent below 100."
	panicOff := fmt.Sprintf("minHealthPercent %d%s turns Envoy's panic mode off", mh.v, mh.origin())
	switch {
	case me.v >= 100:
		return []Finding{finding(RuleOutlierEjection, SeverityError, me.at,
			fmt.Sprintf("maxEjectionPercent %d lets outlier detection eject every endpoint of %s, and %s: the sidecar then answers 503 \"no healthy upstream\" for the ejection time, an outage the app can only fail over from.",
				me.v, cl.host, panicOff), fix)}
	case cl.endpoints > 0 && max(1, cl.endpoints*me.v/100) >= cl.endpoints:
		return []Finding{finding(RuleOutlierEjection, SeverityError, mh.at,
			fmt.Sprintf("%s has %d endpoint(s) and maxEjectionPercent %d%s, and Envoy always lets one be ejected, so outlier detection can eject all of them; %s, so the sidecar then answers 503 \"no healthy upstream\".",
				cl.host, cl.endpoints, me.v, me.origin(), panicOff), fix)}
	case cl.endpoints < 0 && !cl.external:
		return []Finding{finding(RuleOutlierEjection, SeverityWarning, mh.at,
			fmt.Sprintf("%s, and Envoy always lets one endpoint be ejected: if %s runs a single replica (common for GPU-backed model servers), one ejection leaves no healthy upstream and every call fails with 503 until it returns.",
				panicOff, cl.host), fix)}
	}
	return nil
}

// affinity: affinity-header. A DestinationRule that hashes on a header the app never
// sends gives every request a random endpoint; an app affinity header that no
// in-mesh LLM host hashes on keeps no session on the replica that holds its cache.
func (c *checker) affinity(tables [][]*route, clusters []*cluster) []Finding {
	want := strings.ToLower(c.app.AffinityHeader)
	var out []Finding
	hashed := map[string]bool{} // in-mesh hosts with a matching hash
	for _, cl := range clusters {
		h := cl.hash
		switch {
		case h.v == "httpHeaderName" && !strings.EqualFold(cl.hashHeader, want):
			sends := "sends no affinity header"
			fix := fmt.Sprintf("Make the app send %q (Description.affinityHeader), or remove the hash.", cl.hashHeader)
			if want != "" {
				sends = fmt.Sprintf("sends its session key in %q", c.app.AffinityHeader)
				fix = fmt.Sprintf("Hash on the header the app sends, httpHeaderName: %s, or make the app send %q.", c.app.AffinityHeader, cl.hashHeader)
			}
			out = append(out, finding(RuleAffinityHeader, SeverityWarning, h.at,
				fmt.Sprintf("consistentHash on header %q for %s, but the app %s: a request without the header gets a random endpoint, so no session stays on one replica.",
					cl.hashHeader, cl.host, sends), fix))
			hashed[cl.host] = true // reported here already
		case h.v == "httpHeaderName":
			hashed[cl.host] = true
		case want != "" && h.set:
			out = append(out, finding(RuleAffinityHeader, SeverityWarning, h.at,
				fmt.Sprintf("consistentHash uses %s for %s, but the app keys sessions by the header %q: the mesh's choice of replica ignores the app's sessions.",
					h.v, cl.host, c.app.AffinityHeader),
				fmt.Sprintf("Use consistentHash: {httpHeaderName: %s}.", c.app.AffinityHeader)))
			hashed[cl.host] = true // reported here already
		}
	}
	if want == "" {
		return out
	}
	for _, host := range c.inMeshLLMHosts(tables, clusters) {
		if !hashed[host] {
			out = append(out, finding(RuleAffinityHeader, SeverityWarning, c.appAt("affinityHeader"),
				fmt.Sprintf("The app sends its session key in %q, but no DestinationRule hashes on it for %s: the sidecar balances every request on its own, so a session does not stay on the replica that holds its cache.",
					c.app.AffinityHeader, host),
				fmt.Sprintf("Add a DestinationRule for %s with trafficPolicy.loadBalancer.consistentHash.httpHeaderName: %s.", host, c.app.AffinityHeader)))
		}
	}
	return out
}

// inMeshLLMHosts lists the destinations of LLM routes that are neither public APIs nor
// ServiceEntry hosts outside the mesh: the replicas the mesh chooses among.
func (c *checker) inMeshLLMHosts(tables [][]*route, clusters []*cluster) []string {
	external := map[string]bool{}
	for _, cl := range clusters {
		external[cl.host] = external[cl.host] || cl.external
	}
	var out []string
	for _, t := range tables {
		for _, r := range t {
			if len(c.carries[r]) == 0 || !c.llmRoute(r) {
				continue
			}
			for _, d := range r.dests {
				if external[d] || anyOverlap([]string{d}, publicLLMHosts) || c.externalEntry(d) || slices.Contains(out, d) {
					continue
				}
				out = append(out, d)
			}
		}
	}
	return out
}

func (c *checker) externalEntry(host string) bool {
	for _, e := range c.mesh.entries {
		if e.external && anyOverlap(e.hosts, []string{host}) {
			return true
		}
	}
	return false
}
