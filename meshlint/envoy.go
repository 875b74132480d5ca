package meshlint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// MaxConfigDumpBytes caps the config dump read from a sidecar.
const MaxConfigDumpBytes = 256 << 20

// Envoy's defaults for fields a config dump may leave out; Istio writes most of them.
const (
	envoyRouteTimeout  = 15 * time.Second // route.timeout
	envoyNumRetries    = 1                // retry_policy.num_retries
	envoyCircuitLimit  = 1024             // max_connections, max_pending_requests, max_requests
	envoyPanicPercent  = 50               // common_lb_config.healthy_panic_threshold
	httpProtocolOption = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// CheckEnvoy reads the live configuration of the sidecar whose admin interface is at
// adminURL (Istio's is http://127.0.0.1:15000) and checks it against opts.App, as
// infermesh-lint -envoy-admin does. An application can call it once at start-up and log
// the findings. The context bounds the request; the error is a [*ParseError] when the
// admin interface cannot be reached or its answer read.
func CheckEnvoy(ctx context.Context, adminURL string, opts Options) ([]Finding, error) {
	m, err := ReadEnvoy(ctx, adminURL, nil)
	if err != nil {
		return nil, err
	}
	return Check(m, opts)
}

// ReadEnvoy fetches adminURL's /config_dump (with endpoints) and reads its routes and
// clusters, Envoy's defaults applied where the dump leaves a field out. client nil means
// a plain http.Client; the context bounds the request.
func ReadEnvoy(ctx context.Context, adminURL string, client *http.Client) (*Mesh, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &ParseError{File: adminURL, Err: errors.New("the Envoy admin address must be an http:// URL such as http://127.0.0.1:15000")}
	}
	source := strings.TrimSuffix(adminURL, "/") + "/config_dump"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, source+"?include_eds", nil)
	if err != nil {
		return nil, &ParseError{File: source, Err: err}
	}
	if client == nil {
		client = &http.Client{}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, &ParseError{File: source, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &ParseError{File: source, Err: fmt.Errorf("the admin interface answered %s", resp.Status)}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxConfigDumpBytes+1))
	if err != nil {
		return nil, &ParseError{File: source, Err: err}
	}
	if len(b) > MaxConfigDumpBytes {
		return nil, &ParseError{File: source, Err: fmt.Errorf("the config dump is larger than %d bytes", MaxConfigDumpBytes)}
	}
	m, err := parseConfigDump(source, b)
	if err != nil {
		return nil, &ParseError{File: source, Err: err}
	}
	return m, nil
}

// parseConfigDump decodes a config dump with Envoy's own types. Istio's dumps hold
// extensions go-control-plane does not know (Istio's filters, Wasm); those decode as an
// empty placeholder rather than failing the whole dump.
func parseConfigDump(source string, b []byte) (*Mesh, error) {
	res, err := newLenientResolver()
	if err != nil {
		return nil, err
	}
	var dump adminv3.ConfigDump
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true, Resolver: res}).Unmarshal(b, &dump); err != nil {
		return nil, fmt.Errorf("not an Envoy config dump: %w", err)
	}
	var clusters []*clusterv3.Cluster
	var routeConfigs []*routev3.RouteConfiguration
	var assignments []*endpointv3.ClusterLoadAssignment
	for _, a := range dump.GetConfigs() {
		var err error
		switch {
		case a.MessageIs((*adminv3.ClustersConfigDump)(nil)):
			clusters, err = section[clusterv3.Cluster](a, dumpClusters)
		case a.MessageIs((*adminv3.RoutesConfigDump)(nil)):
			routeConfigs, err = section[routev3.RouteConfiguration](a, dumpRoutes)
		case a.MessageIs((*adminv3.EndpointsConfigDump)(nil)):
			assignments, err = section[endpointv3.ClusterLoadAssignment](a, dumpEndpoints)
		}
		if err != nil {
			return nil, err
		}
	}
	endpoints := map[string]int{}
	for _, c := range assignments {
		endpoints[c.GetClusterName()] = lbEndpoints(c)
	}
	m := &Mesh{live: true}
	for _, rc := range routeConfigs {
		m.addRouteConfiguration(source, rc)
	}
	for _, c := range clusters {
		if cl := envoyCluster(source, c, endpoints); cl != nil {
			m.clusters = append(m.clusters, cl)
		}
	}
	m.hashHeaders()
	return m, nil
}

// protoPtr is a pointer to a generated message type.
type protoPtr[T any] interface {
	*T
	proto.Message
}

// section decodes a config dump section (a D) and the resources (each a T) that anys
// lists in it.
func section[T any, PT protoPtr[T], D any, PD protoPtr[D]](a *anypb.Any, anys func(PD) []*anypb.Any) ([]PT, error) {
	d := PD(new(D))
	if err := a.UnmarshalTo(d); err != nil {
		return nil, err
	}
	return unpackAll[T, PT](anys(d))
}

func dumpClusters(d *adminv3.ClustersConfigDump) []*anypb.Any {
	var out []*anypb.Any
	for _, s := range d.GetStaticClusters() {
		out = append(out, s.GetCluster())
	}
	for _, s := range d.GetDynamicActiveClusters() {
		out = append(out, s.GetCluster())
	}
	return out
}

func dumpRoutes(d *adminv3.RoutesConfigDump) []*anypb.Any {
	var out []*anypb.Any
	for _, s := range d.GetStaticRouteConfigs() {
		out = append(out, s.GetRouteConfig())
	}
	for _, s := range d.GetDynamicRouteConfigs() {
		out = append(out, s.GetRouteConfig())
	}
	return out
}

func dumpEndpoints(d *adminv3.EndpointsConfigDump) []*anypb.Any {
	var out []*anypb.Any
	for _, s := range d.GetStaticEndpointConfigs() {
		out = append(out, s.GetEndpointConfig())
	}
	for _, s := range d.GetDynamicEndpointConfigs() {
		out = append(out, s.GetEndpointConfig())
	}
	return out
}

func lbEndpoints(c *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, l := range c.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}

// unpackAll decodes the Anys that hold a T; others (and empty ones) are skipped.
func unpackAll[T any, P protoPtr[T]](anys []*anypb.Any) ([]P, error) {
	var out []P
	for _, a := range anys {
		if a == nil || !a.MessageIs(P(new(T))) {
			continue
		}
		v := P(new(T))
		if err := a.UnmarshalTo(v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// lenientResolver is a protojson resolver: it resolves Any types from the registry of
// the packages this one imports, and every other type to an empty message whose fields
// are discarded.
type lenientResolver struct {
	unknown protoreflect.MessageType
}

func newLenientResolver() (lenientResolver, error) {
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:        proto.String("meshlint/unknown.proto"),
		Package:     proto.String("meshlint"),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Unknown")}},
	}, nil)
	if err != nil {
		return lenientResolver{}, err
	}
	return lenientResolver{unknown: dynamicpb.NewMessageType(fd.Messages().Get(0))}, nil
}

func (r lenientResolver) FindMessageByName(n protoreflect.FullName) (protoreflect.MessageType, error) {
	return protoregistry.GlobalTypes.FindMessageByName(n)
}

func (r lenientResolver) FindMessageByURL(u string) (protoreflect.MessageType, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(u)
	if errors.Is(err, protoregistry.NotFound) {
		return r.unknown, nil
	}
	return mt, err
}

func (r lenientResolver) FindExtensionByName(n protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(n)
}

func (r lenientResolver) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, n)
}

// addRouteConfiguration reads each virtual host's routes as one ordered table.
func (m *Mesh) addRouteConfiguration(source string, rc *routev3.RouteConfiguration) {
	res := "RouteConfiguration/" + rc.GetName()
	for i, vh := range rc.GetVirtualHosts() {
		vhPath := fmt.Sprintf("virtual_hosts[%d]", i)
		var hosts []string
		for _, d := range vh.GetDomains() {
			hosts = append(hosts, domainHost(d))
		}
		var table []*route
		for j, rt := range vh.GetRoutes() {
			at := func(field string) loc {
				return loc{resource: res, path: fmt.Sprintf("%s.routes[%d]%s", vhPath, j, field), file: source}
			}
			action := rt.GetRoute()
			r := &route{at: at(""), hosts: hosts, matches: envoyMatch(rt.GetMatch()), upstream: action != nil, attemptCounts: vh.GetIncludeAttemptCountInResponse()}
			r.timeout = setting[time.Duration]{v: envoyRouteTimeout, at: at(".route.timeout"), note: "Envoy's default: the route sets none"}
			if t := action.GetTimeout(); t != nil {
				r.timeout = setting[time.Duration]{v: t.AsDuration(), set: true, at: at(".route.timeout")}
			}
			rp, rpPath := action.GetRetryPolicy(), at(".route.retry_policy")
			if rp == nil && vh.GetRetryPolicy() != nil {
				rp, rpPath = vh.GetRetryPolicy(), loc{resource: res, path: vhPath + ".retry_policy", file: source, shared: true}
			}
			envoyRetry(r, rp, rpPath)
			r.clusters = actionClusters(action)
			for _, c := range r.clusters {
				r.dests = append(r.dests, clusterHost(c))
			}
			for _, hp := range action.GetHashPolicy() {
				if h := hp.GetHeader().GetHeaderName(); h != "" {
					r.hashHeader = setting[string]{v: h, set: true, at: at(".route.hash_policy")}
				}
			}
			table = append(table, r)
		}
		m.tables = append(m.tables, table)
	}
}

func envoyRetry(r *route, rp *routev3.RetryPolicy, at loc) {
	field := func(name string) loc { f := at; f.path += "." + name; return f }
	if rp == nil {
		r.retries = setting[int]{at: at, note: "no retry policy"}
		r.retryOn = setting[string]{at: at}
		r.perTry = setting[time.Duration]{at: field("per_try_timeout")}
		return
	}
	r.retries = setting[int]{v: envoyNumRetries, at: field("num_retries"), note: "Envoy's default"}
	if n := rp.GetNumRetries(); n != nil {
		r.retries = setting[int]{v: int(n.GetValue()), set: true, at: field("num_retries")}
	}
	r.retryOn = setting[string]{v: rp.GetRetryOn(), set: true, at: field("retry_on")}
	r.perTry = setting[time.Duration]{at: field("per_try_timeout")}
	if t := rp.GetPerTryTimeout(); t != nil {
		r.perTry = setting[time.Duration]{v: t.AsDuration(), set: true, at: field("per_try_timeout")}
	}
}

func actionClusters(a *routev3.RouteAction) []string {
	if c := a.GetCluster(); c != "" {
		return []string{c}
	}
	var out []string
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		out = append(out, wc.GetName())
	}
	return out
}

// clusterHost is the service host of an Istio cluster name
// ("outbound|443||api.openai.com"), or the name itself.
func clusterHost(name string) string {
	if parts := strings.Split(name, "|"); len(parts) == 4 {
		return parts[3]
	}
	return name
}

// domainHost drops a virtual host domain's port: "api.openai.com:80".
func domainHost(d string) string {
	if i := strings.LastIndexByte(d, ':'); i > 0 && !strings.Contains(d[i:], "]") {
		return strings.ToLower(d[:i])
	}
	return strings.ToLower(d)
}

// envoyMatch turns a RouteMatch into a path match. Only :method among the headers is
// evaluated; other conditions make the match conditional.
func envoyMatch(rm *routev3.RouteMatch) []pathMatch {
	ignoreCase := rm.GetCaseSensitive() != nil && !rm.GetCaseSensitive().GetValue()
	pm := pathMatch{post: true}
	var err error
	switch ps := rm.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		if ps.Prefix != "" {
			pm.path, err = stringMatcher("", ps.Prefix, "", ignoreCase)
		}
	case *routev3.RouteMatch_Path:
		pm.path, err = stringMatcher(ps.Path, "", "", ignoreCase)
	case *routev3.RouteMatch_SafeRegex:
		pm.path, err = stringMatcher("", "", ps.SafeRegex.GetRegex(), false)
	case *routev3.RouteMatch_PathSeparatedPrefix:
		prefix := ps.PathSeparatedPrefix
		pm.path = func(p string) bool {
			return p == prefix || strings.HasPrefix(p, prefix+"/")
		}
	default:
		pm.conditional = true // a URI template or CONNECT matcher: not evaluated
	}
	if err != nil {
		pm.path = func(string) bool { return false } // Envoy rejects such a route
	}
	for _, h := range rm.GetHeaders() {
		if !strings.EqualFold(h.GetName(), ":method") || h.GetStringMatch() == nil {
			pm.conditional = true
			continue
		}
		sm := h.GetStringMatch()
		if sm.GetSuffix() != "" || sm.GetContains() != "" || sm.GetCustom() != nil {
			pm.conditional = true // not evaluated
			continue
		}
		method, err := stringMatcher(sm.GetExact(), sm.GetPrefix(), sm.GetSafeRegex().GetRegex(), sm.GetIgnoreCase())
		if err == nil && method("POST") == h.GetInvertMatch() {
			pm.post = false
		}
	}
	if len(rm.GetQueryParameters()) > 0 || rm.GetRuntimeFraction() != nil || rm.GetGrpc() != nil ||
		rm.GetTlsContext() != nil || len(rm.GetDynamicMetadata()) > 0 || len(rm.GetFilterState()) > 0 {
		pm.conditional = true
	}
	return []pathMatch{pm}
}

// envoyCluster reads a cluster's effective policy; it skips Istio's inbound and
// internal clusters.
func envoyCluster(source string, c *clusterv3.Cluster, endpoints map[string]int) *cluster {
	name := c.GetName()
	if parts := strings.Split(name, "|"); len(parts) == 4 && parts[0] != "outbound" {
		return nil
	}
	res := "Cluster/" + name
	at := func(path string) loc { return loc{resource: res, path: path, file: source} }
	cl := &cluster{at: at(""), name: name, host: clusterHost(name), endpoints: envoyEndpointCount(c, endpoints)}
	envoyLimits(cl, c, at)
	if od := c.GetOutlierDetection(); od != nil {
		cl.outlier = setting[bool]{v: true, set: true, at: at("outlier_detection")}
		cl.maxEjection = setting[int]{v: envoyMaxEjection, at: at("outlier_detection.max_ejection_percent"), note: "Envoy's default"}
		if v := od.GetMaxEjectionPercent(); v != nil {
			cl.maxEjection = setting[int]{v: int(v.GetValue()), set: true, at: cl.maxEjection.at}
		}
		cl.minHealth = setting[int]{v: envoyPanicPercent, at: at("common_lb_config.healthy_panic_threshold"), note: "Envoy's default"}
		if v := c.GetCommonLbConfig().GetHealthyPanicThreshold(); v != nil {
			cl.minHealth = setting[int]{v: int(v.GetValue()), set: true, at: cl.minHealth.at}
		}
	}
	if lb := c.GetLbPolicy(); lb == clusterv3.Cluster_RING_HASH || lb == clusterv3.Cluster_MAGLEV {
		cl.hash = setting[string]{v: "hash policy", set: true, at: at("lb_policy")}
	}
	return cl
}

// envoyLimits reads the circuit breakers of the DEFAULT routing priority, which carries
// ordinary requests, and the requests allowed per connection.
func envoyLimits(cl *cluster, c *clusterv3.Cluster, at func(string) loc) {
	cl.maxConnections = setting[int]{v: envoyCircuitLimit, at: at("circuit_breakers.thresholds"), note: "Envoy's default"}
	cl.maxPending, cl.maxRequests = cl.maxConnections, cl.maxConnections
	for i, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		p := fmt.Sprintf("circuit_breakers.thresholds[%d].", i)
		cl.maxConnections = circuitLimit(t.GetMaxConnections(), at(p+"max_connections"))
		cl.maxPending = circuitLimit(t.GetMaxPendingRequests(), at(p+"max_pending_requests"))
		cl.maxRequests = circuitLimit(t.GetMaxRequests(), at(p+"max_requests"))
		break
	}
	cl.maxRequestsPerConnection = setting[int]{at: at("typed_extension_protocol_options")}
	if n := c.GetMaxRequestsPerConnection(); n != nil { //nolint:staticcheck // older control planes still set it
		cl.maxRequestsPerConnection = setting[int]{v: int(n.GetValue()), set: true, at: at("max_requests_per_connection")}
	}
	var hpo httpv3.HttpProtocolOptions
	if a := c.GetTypedExtensionProtocolOptions()[httpProtocolOption]; a != nil && a.UnmarshalTo(&hpo) == nil {
		if n := hpo.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection(); n != nil {
			cl.maxRequestsPerConnection = setting[int]{v: int(n.GetValue()), set: true,
				at: at("typed_extension_protocol_options[" + httpProtocolOption + "].common_http_protocol_options.max_requests_per_connection")}
		}
	}
}

// envoyEndpointCount is the number of endpoints a cluster balances over, or -1 when the
// dump does not say (DNS names that resolve to several addresses).
func envoyEndpointCount(c *clusterv3.Cluster, endpoints map[string]int) int {
	switch c.GetType() {
	case clusterv3.Cluster_LOGICAL_DNS:
		return 1
	case clusterv3.Cluster_STATIC:
		return lbEndpoints(c.GetLoadAssignment())
	case clusterv3.Cluster_EDS:
		svc := c.GetEdsClusterConfig().GetServiceName()
		if svc == "" {
			svc = c.GetName()
		}
		if n, ok := endpoints[svc]; ok {
			return n
		}
	}
	return -1
}

func circuitLimit(v *wrapperspb.UInt32Value, at loc) setting[int] {
	if v == nil {
		return setting[int]{v: envoyCircuitLimit, at: at, note: "Envoy's default"}
	}
	return setting[int]{v: int(v.GetValue()), set: true, at: at}
}

// hashHeaders gives ring-hash and Maglev clusters the header their routes hash on.
func (m *Mesh) hashHeaders() {
	byName := map[string]*cluster{}
	for _, cl := range m.clusters {
		byName[cl.name] = cl
	}
	for _, t := range m.tables {
		for _, r := range t {
			if !r.hashHeader.set {
				continue
			}
			for _, name := range r.clusters {
				if cl := byName[name]; cl != nil && cl.hash.set {
					cl.hash = setting[string]{v: "httpHeaderName", set: true, at: r.hashHeader.at}
					cl.hashHeader = r.hashHeader.v
				}
			}
		}
	}
}
