package meshlint

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	apiv1alpha3 "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
)

// Istio's defaults that the checks apply where a resource is silent.
const (
	// istioRetries and istioRetryOn are the retry policy Istio gives every HTTP route
	// that sets no retries (Envoy's num_retries: 3 tries in all), 503 being its
	// retriable status code.
	istioRetries   = 2
	istioRetryOn   = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	istioRetryNote = "Istio's default for a route without retries"
	// envoyMaxEjection is Envoy's max_ejection_percent, which Istio leaves in place
	// when maxEjectionPercent is unset.
	envoyMaxEjection = 10
)

// ReadYAML reads the Istio resources of one file or stream into m: VirtualService,
// DestinationRule and ServiceEntry of networking.istio.io v1, v1beta1 or v1alpha3, and
// EnvoyFilter. It takes multi-document YAML, JSON, "kind: List" and the output of
// kubectl get -o yaml; objects of other kinds are skipped. file names the input in
// errors and findings. On error m is unchanged and the error is a [*ParseError].
func (m *Mesh) ReadYAML(file string, r io.Reader) error {
	objs, err := readObjects(file, r)
	if err != nil {
		return err
	}
	var add Mesh
	for _, o := range objs {
		if err := add.addObject(o); err != nil {
			return err
		}
	}
	m.tables = append(m.tables, add.tables...)
	m.clusters = append(m.clusters, add.clusters...)
	m.entries = append(m.entries, add.entries...)
	if add.attemptCounts.resource != "" {
		m.attemptCounts = add.attemptCounts
	}
	return nil
}

func (m *Mesh) addObject(o object) error {
	group, version, _ := strings.Cut(o.apiVersion, "/")
	if group != "networking.istio.io" {
		return nil
	}
	switch o.kind {
	case "VirtualService", "DestinationRule", "ServiceEntry":
		if version != "v1" && version != "v1beta1" && version != "v1alpha3" {
			return &ParseError{File: o.file, Line: o.node.Line, Err: fmt.Errorf("%s %s: apiVersion %s is not v1, v1beta1 or v1alpha3", o.kind, o.id(), o.apiVersion)}
		}
	case "EnvoyFilter":
	default:
		return nil
	}
	switch o.kind {
	case "VirtualService":
		var vs networkingv1.VirtualService
		if err := o.decode(&vs); err != nil {
			return err
		}
		return m.addVirtualService(o, &vs.Spec)
	case "DestinationRule":
		var dr networkingv1.DestinationRule
		if err := o.decode(&dr); err != nil {
			return err
		}
		m.addDestinationRule(o, &dr.Spec)
	case "ServiceEntry":
		var se networkingv1.ServiceEntry
		if err := o.decode(&se); err != nil {
			return err
		}
		m.addServiceEntry(o, &se.Spec)
	case "EnvoyFilter":
		var ef networkingv1alpha3.EnvoyFilter
		if err := o.decode(&ef); err != nil {
			return err
		}
		m.addEnvoyFilter(o, &ef.Spec)
	}
	return nil
}

// at locates a field of o.
func (o object) at(c cursor) loc {
	return loc{resource: o.kind + "/" + o.id(), path: c.path, file: o.file, line: c.line}
}

func (m *Mesh) addVirtualService(o object, vs *apiv1alpha3.VirtualService) error {
	hosts := expandHosts(vs.GetHosts(), o.ns())
	httpC := newCursor(o.node).key("spec").key("http")
	var table []*route
	for i, h := range vs.GetHttp() {
		c := httpC.index(i)
		matches, err := istioMatches(o, c, h.GetMatch())
		if err != nil {
			return err
		}
		r := &route{
			at:       o.at(c),
			hosts:    hosts,
			matches:  matches,
			upstream: h.GetDelegate() == nil && h.GetRedirect() == nil && h.GetDirectResponse() == nil,
			timeout:  durationSetting(h.GetTimeout(), o.at(c.key("timeout"))),
		}
		for _, d := range h.GetRoute() {
			r.dests = append(r.dests, expandHost(d.GetDestination().GetHost(), o.ns()))
		}
		istioRetry(r, h.GetRetries(), o, c.key("retries"))
		table = append(table, r)
	}
	m.tables = append(m.tables, table)
	return nil
}

func durationSetting(d *durationpb.Duration, at loc) setting[time.Duration] {
	if d == nil {
		return setting[time.Duration]{at: at}
	}
	return setting[time.Duration]{v: d.AsDuration(), set: true, at: at}
}

// istioRetry applies the route's retries as Istio translates them: no retries means
// Istio's default policy, attempts 0 means none, and an empty retryOn keeps the
// default conditions.
func istioRetry(r *route, in *apiv1alpha3.HTTPRetry, o object, c cursor) {
	r.perTry = durationSetting(in.GetPerTryTimeout(), o.at(c.key("perTryTimeout")))
	if in == nil {
		r.retries = setting[int]{v: istioRetries, at: o.at(c), note: istioRetryNote}
		r.retryOn = setting[string]{v: istioRetryOn, at: o.at(c), note: istioRetryNote}
		return
	}
	r.retries = setting[int]{v: max(int(in.GetAttempts()), 0), set: true, at: o.at(c.key("attempts"))}
	r.retryOn = setting[string]{v: istioRetryOn, at: o.at(c), note: "Istio's default conditions"}
	if on := in.GetRetryOn(); on != "" {
		r.retryOn = setting[string]{v: on, set: true, at: o.at(c.key("retryOn"))}
	}
}

// istioMatches turns HTTPMatchRequests into path matches; no match takes every request.
func istioMatches(o object, c cursor, ms []*apiv1alpha3.HTTPMatchRequest) ([]pathMatch, error) {
	if len(ms) == 0 {
		return []pathMatch{{post: true}}, nil
	}
	out := make([]pathMatch, 0, len(ms))
	for i, m := range ms {
		mc := c.key("match").index(i)
		uri, err := istioStringMatch(m.GetUri(), m.GetIgnoreUriCase())
		if err != nil {
			return nil, &ParseError{File: o.file, Line: mc.key("uri").line, Err: fmt.Errorf("%s %s: %s.uri: %w", o.kind, o.id(), mc.path, err)}
		}
		pm := pathMatch{path: uri, post: true}
		if m.GetMethod() != nil {
			method, err := istioStringMatch(m.GetMethod(), false)
			if err != nil {
				return nil, &ParseError{File: o.file, Line: mc.key("method").line, Err: fmt.Errorf("%s %s: %s.method: %w", o.kind, o.id(), mc.path, err)}
			}
			pm.post = method == nil || method("POST")
		}
		pm.conditional = len(m.GetHeaders()) > 0 || len(m.GetQueryParams()) > 0 || len(m.GetWithoutHeaders()) > 0 ||
			len(m.GetSourceLabels()) > 0 || m.GetSourceNamespace() != "" || m.GetPort() != 0 || len(m.GetGateways()) > 0 ||
			m.GetAuthority() != nil || m.GetScheme() != nil
		out = append(out, pm)
	}
	return out, nil
}

// istioStringMatch returns a matcher for an Istio StringMatch; nil matches anything.
// Regexes are RE2 and must match the whole value, as in Envoy.
func istioStringMatch(sm *apiv1alpha3.StringMatch, ignoreCase bool) (func(string) bool, error) {
	switch mt := sm.GetMatchType().(type) {
	case *apiv1alpha3.StringMatch_Exact:
		return stringMatcher(mt.Exact, "", "", ignoreCase)
	case *apiv1alpha3.StringMatch_Prefix:
		return stringMatcher("", mt.Prefix, "", ignoreCase)
	case *apiv1alpha3.StringMatch_Regex:
		return stringMatcher("", "", mt.Regex, ignoreCase)
	}
	return nil, nil
}

// stringMatcher matches an exact value, a prefix or an RE2 regex (whichever is set; the
// regex wins when more are), for Istio's and Envoy's matchers alike.
func stringMatcher(exact, prefix, re string, ignoreCase bool) (func(string) bool, error) {
	fold := func(s string) string { return s }
	if ignoreCase {
		fold = strings.ToLower
	}
	switch {
	case re != "":
		flags := ""
		if ignoreCase {
			flags = "(?i)"
		}
		rx, err := regexp.Compile(flags + "^(?:" + re + ")$")
		if err != nil {
			return nil, err
		}
		return rx.MatchString, nil
	case prefix != "":
		prefix = fold(prefix)
		return func(s string) bool { return strings.HasPrefix(fold(s), prefix) }, nil
	default:
		exact = fold(exact)
		return func(s string) bool { return fold(s) == exact }, nil
	}
}

func (m *Mesh) addDestinationRule(o object, dr *apiv1alpha3.DestinationRule) {
	host := expandHost(dr.GetHost(), o.ns())
	spec := newCursor(o.node).key("spec")
	add := func(tp *apiv1alpha3.TrafficPolicy, c cursor) {
		if tp == nil {
			return
		}
		m.clusters = append(m.clusters, policyCluster(o, c, host, tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection()))
		for j, pl := range tp.GetPortLevelSettings() {
			pc := c.key("portLevelSettings").index(j)
			m.clusters = append(m.clusters, policyCluster(o, pc, host, pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection()))
		}
	}
	add(dr.GetTrafficPolicy(), spec.key("trafficPolicy"))
	for k, s := range dr.GetSubsets() {
		add(s.GetTrafficPolicy(), spec.key("subsets").index(k).key("trafficPolicy"))
	}
}

// policyCluster reads one traffic policy block; what it leaves unset stays unset.
func policyCluster(o object, c cursor, host string, lb *apiv1alpha3.LoadBalancerSettings,
	cp *apiv1alpha3.ConnectionPoolSettings, od *apiv1alpha3.OutlierDetection) *cluster {
	cl := &cluster{at: o.at(c), host: host, endpoints: -1}
	httpC, tcpC := c.key("connectionPool").key("http"), c.key("connectionPool").key("tcp")
	cl.maxRequestsPerConnection = intSetting(int(cp.GetHttp().GetMaxRequestsPerConnection()), o, httpC.key("maxRequestsPerConnection"))
	cl.maxRequests = intSetting(int(cp.GetHttp().GetHttp2MaxRequests()), o, httpC.key("http2MaxRequests"))
	cl.maxPending = intSetting(int(cp.GetHttp().GetHttp1MaxPendingRequests()), o, httpC.key("http1MaxPendingRequests"))
	cl.maxConnections = intSetting(int(cp.GetTcp().GetMaxConnections()), o, tcpC.key("maxConnections"))

	hc := c.key("loadBalancer").key("consistentHash")
	switch k := lb.GetConsistentHash().GetHashKey().(type) {
	case *apiv1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		cl.hash = setting[string]{v: "httpHeaderName", set: true, at: o.at(hc.key("httpHeaderName"))}
		cl.hashHeader = k.HttpHeaderName
	case *apiv1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		cl.hash = setting[string]{v: "httpCookie", set: true, at: o.at(hc.key("httpCookie"))}
	case *apiv1alpha3.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		cl.hash = setting[string]{v: "useSourceIp", set: true, at: o.at(hc.key("useSourceIp"))}
	case *apiv1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		cl.hash = setting[string]{v: "httpQueryParameterName", set: true, at: o.at(hc.key("httpQueryParameterName"))}
	default:
		cl.hash.at = o.at(c.key("loadBalancer"))
	}

	odC := c.key("outlierDetection")
	cl.outlier = setting[bool]{v: od != nil, set: od != nil, at: o.at(odC)}
	cl.maxEjection = setting[int]{v: envoyMaxEjection, at: o.at(odC.key("maxEjectionPercent")), note: "Envoy's default, which Istio keeps"}
	if od.GetMaxEjectionPercent() > 0 {
		cl.maxEjection.v, cl.maxEjection.set = int(od.GetMaxEjectionPercent()), true
	}
	cl.minHealth = intSetting(int(od.GetMinHealthPercent()), o, odC.key("minHealthPercent"))
	cl.minHealth.note = "Istio's default"
	return cl
}

// intSetting is an int field whose zero means "unset" in Istio's API; it counts as set
// when the input writes it, even as 0.
func intSetting(v int, o object, c cursor) setting[int] {
	return setting[int]{v: v, set: c.n != nil, at: o.at(c)}
}

func (m *Mesh) addServiceEntry(o object, se *apiv1alpha3.ServiceEntry) {
	hostsC := newCursor(o.node).key("spec").key("hosts")
	e := serviceEntry{
		at:        o.at(newCursor(o.node).key("spec")),
		external:  se.GetLocation() != apiv1alpha3.ServiceEntry_MESH_INTERNAL,
		endpoints: -1,
	}
	for i, h := range se.GetHosts() {
		e.hosts = append(e.hosts, expandHost(h, o.ns()))
		e.hostAt = append(e.hostAt, o.at(hostsC.index(i)))
	}
	for _, p := range se.GetPorts() {
		switch strings.ToUpper(p.GetProtocol()) {
		case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
			e.http = true
		}
	}
	switch {
	case se.GetResolution() == apiv1alpha3.ServiceEntry_DNS_ROUND_ROBIN:
		e.endpoints = 1 // one logical host, whatever DNS returns
	case len(se.GetEndpoints()) > 0 && se.GetResolution() == apiv1alpha3.ServiceEntry_STATIC:
		e.endpoints = len(se.GetEndpoints())
	}
	m.entries = append(m.entries, e)
}

// addEnvoyFilter notes a patch that makes the sidecar report x-envoy-attempt-count in
// responses, which lets infermesh see the mesh's retries.
func (m *Mesh) addEnvoyFilter(o object, ef *apiv1alpha3.EnvoyFilter) {
	patchesC := newCursor(o.node).key("spec").key("configPatches")
	for i, p := range ef.GetConfigPatches() {
		if p.GetApplyTo() != apiv1alpha3.EnvoyFilter_VIRTUAL_HOST || p.GetPatch().GetOperation() != apiv1alpha3.EnvoyFilter_Patch_MERGE {
			continue
		}
		fields := p.GetPatch().GetValue().GetFields()
		for _, name := range []string{"include_attempt_count_in_response", "includeAttemptCountInResponse"} {
			if fields[name].GetBoolValue() {
				m.attemptCounts = o.at(patchesC.index(i).key("patch").key("value").key(name))
			}
		}
	}
}
