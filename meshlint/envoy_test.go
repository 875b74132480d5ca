package meshlint_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/meshlint"
)

const (
	openaiCluster = "outbound|80||api.openai.com"
	vllmCluster   = "outbound|8000||vllm.ml.svc.cluster.local"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// recordedDump builds what an Istio sidecar's /config_dump?include_eds holds for an app
// that calls the OpenAI API (TLS origination, a VirtualService with a 30 s timeout and
// 5xx retries, a DestinationRule with a small pool) and an in-mesh vLLM server (Istio's
// default retries, ring hash on x-user-id, one endpoint), marshalled with protojson as
// Envoy writes it. Istio's own extensions, which go-control-plane does not know, are
// spliced in as JSON, as a real dump has them.
func recordedDump(t *testing.T) []byte {
	t.Helper()
	routes := &routev3.RouteConfiguration{
		Name: "80",
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "api.openai.com:80",
			Domains: []string{"api.openai.com", "api.openai.com:80"},
			Routes: []*routev3.Route{{
				Name:  "chat",
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/v1/chat/completions"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: openaiCluster},
					Timeout:          durationpb.New(30 * time.Second),
					RetryPolicy: &routev3.RetryPolicy{
						RetryOn: "5xx,connect-failure", NumRetries: wrapperspb.UInt32(3), PerTryTimeout: durationpb.New(10 * time.Second),
					},
				}},
			}, {
				Name:  "other",
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				// No timeout: Envoy's default of 15 s applies.
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: openaiCluster}}},
			}},
		}, {
			Name:                          "vllm.ml.svc.cluster.local:8000",
			Domains:                       []string{"vllm.ml.svc.cluster.local", "vllm", "vllm.ml", "vllm:8000"},
			IncludeAttemptCountInResponse: true,
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/v1/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: vllmCluster},
					Timeout:          durationpb.New(0),
					RetryPolicy: &routev3.RetryPolicy{
						RetryOn:    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
						NumRetries: wrapperspb.UInt32(2), RetriableStatusCodes: []uint32{503},
					},
					HashPolicy: []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
						Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user-id"},
					}}},
				}},
			}},
		}},
	}
	openai := &clusterv3.Cluster{
		Name:                 openaiCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxConnections: wrapperspb.UInt32(4294967295), MaxPendingRequests: wrapperspb.UInt32(4294967295), MaxRequests: wrapperspb.UInt32(32),
		}}},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(t, &httpv3.HttpProtocolOptions{
				CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(10)},
			}),
		},
		OutlierDetection: &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(5), MaxEjectionPercent: wrapperspb.UInt32(100)},
		CommonLbConfig:   &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}},
	}
	vllm := &clusterv3.Cluster{
		Name:                 vllmCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: vllmCluster},
		LbPolicy:             clusterv3.Cluster_RING_HASH,
		OutlierDetection:     &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3)},
		CommonLbConfig:       &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}},
	}
	inbound := &clusterv3.Cluster{Name: "inbound|8080||", OutlierDetection: &clusterv3.OutlierDetection{MaxEjectionPercent: wrapperspb.UInt32(100)}}
	endpoints := &endpointv3.ClusterLoadAssignment{
		ClusterName: vllmCluster,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.8.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8000}}},
			}}},
		}}}},
	}
	dump := &adminv3.ConfigDump{Configs: []*anypb.Any{
		mustAny(t, &adminv3.ClustersConfigDump{
			StaticClusters: []*adminv3.ClustersConfigDump_StaticCluster{{Cluster: mustAny(t, &clusterv3.Cluster{Name: "prometheus_stats"})}},
			DynamicActiveClusters: []*adminv3.ClustersConfigDump_DynamicCluster{
				{Cluster: mustAny(t, openai)}, {Cluster: mustAny(t, vllm)}, {Cluster: mustAny(t, inbound)},
			},
		}),
		mustAny(t, &adminv3.RoutesConfigDump{DynamicRouteConfigs: []*adminv3.RoutesConfigDump_DynamicRouteConfig{{RouteConfig: mustAny(t, routes)}}}),
		mustAny(t, &adminv3.EndpointsConfigDump{DynamicEndpointConfigs: []*adminv3.EndpointsConfigDump_DynamicEndpointConfig{{EndpointConfig: mustAny(t, endpoints)}}}),
	}}
	b, err := protojson.MarshalOptions{UseProtoNames: true, Indent: "  "}.Marshal(dump)
	if err != nil {
		t.Fatal(err)
	}
	// Istio's extensions and a field from a newer Envoy.
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc["configs"] = append(doc["configs"].([]any), map[string]any{
		"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
		"dynamic_listeners": []any{map[string]any{"name": "0.0.0.0_80", "active_state": map[string]any{"listener": map[string]any{
			"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "0.0.0.0_80",
			"filter_chains": []any{map[string]any{"filters": []any{map[string]any{"name": "istio.stats", "typed_config": map[string]any{
				"@type": "type.googleapis.com/stats.PluginConfig", "disable_host_header_fallback": true,
			}}}}},
		}}}},
	})
	clusters := doc["configs"].([]any)[0].(map[string]any)["dynamic_active_clusters"].([]any)
	clusters[0].(map[string]any)["cluster"].(map[string]any)["filters"] = []any{map[string]any{
		"name": "istio.metadata_exchange", "typed_config": map[string]any{
			"@type": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange", "protocol": "istio-peer-exchange",
		},
	}}
	doc["a_field_from_a_newer_envoy"] = true
	b, err = json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// adminServer serves a config dump as Envoy's admin interface does.
func adminServer(t *testing.T, dump []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/config_dump" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if _, ok := r.URL.Query()["include_eds"]; !ok {
			http.Error(w, "the check must ask for endpoints", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(dump)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func liveApp() *llmclient.Description {
	d := llmclient.DefaultDescription()
	d.Concurrency, d.AffinityHeader = 64, "x-session-id"
	return &d
}

// The live mode reads the recorded dump from a test admin server and finds what the
// effective configuration gets wrong, Envoy's defaults included.
func TestEnvoyLive(t *testing.T) {
	srv := adminServer(t, recordedDump(t))
	m, err := meshlint.ReadEnvoy(context.Background(), srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	fs, err := meshlint.Check(m, meshlint.Options{App: liveApp()})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"error outlier-ejection Cluster/outbound|8000||vllm.ml.svc.cluster.local common_lb_config.healthy_panic_threshold :0",
		"error pool-overflow Cluster/outbound|80||api.openai.com circuit_breakers.thresholds[0].max_requests :0",
		"error outlier-ejection Cluster/outbound|80||api.openai.com outlier_detection.max_ejection_percent :0",
		"warning conn-churn Cluster/outbound|80||api.openai.com typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions].common_http_protocol_options.max_requests_per_connection :0",
		"error retry-amplification RouteConfiguration/80 virtual_hosts[0].routes[0].route.retry_policy.num_retries :0",
		"error stream-timeout RouteConfiguration/80 virtual_hosts[0].routes[0].route.retry_policy.per_try_timeout :0",
		"error timeout-order RouteConfiguration/80 virtual_hosts[0].routes[0].route.retry_policy.per_try_timeout :0",
		"warning timeout-order RouteConfiguration/80 virtual_hosts[0].routes[0].route.retry_policy.per_try_timeout :0",
		"warning retry-non-idempotent RouteConfiguration/80 virtual_hosts[0].routes[0].route.retry_policy.retry_on :0",
		"error stream-timeout RouteConfiguration/80 virtual_hosts[0].routes[0].route.timeout :0",
		"error timeout-order RouteConfiguration/80 virtual_hosts[0].routes[0].route.timeout :0",
		"error stream-timeout RouteConfiguration/80 virtual_hosts[0].routes[1].route.timeout :0",
		"error timeout-order RouteConfiguration/80 virtual_hosts[0].routes[1].route.timeout :0",
		"warning affinity-header RouteConfiguration/80 virtual_hosts[1].routes[0].route.hash_policy :0",
		"error retry-amplification RouteConfiguration/80 virtual_hosts[1].routes[0].route.retry_policy.num_retries :0",
	}
	if got := briefs(fs, ""); !slices.Equal(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range fs {
		if f.File != srv.URL+"/config_dump" {
			t.Errorf("%s: file %q", brief(f), f.File)
		}
		switch {
		case f.Path == "virtual_hosts[0].routes[1].route.timeout" && f.Rule == meshlint.RuleStreamTimeout:
			if !strings.Contains(f.Message, "timeout 15s (Envoy's default: the route sets none)") {
				t.Errorf("Envoy's default route timeout not named: %s", f.Message)
			}
		case f.Path == "virtual_hosts[1].routes[0].route.retry_policy.num_retries":
			// The vLLM virtual host reports attempt counts, so infermesh stops after a
			// mesh-retried answer: 3 mesh tries + 3 embedding attempts - 1.
			if !strings.Contains(f.Message, "Up to 5 upstream requests per call to /v1/embeddings") {
				t.Errorf("mesh-aware figure: %s", f.Message)
			}
		case f.Rule == meshlint.RuleOutlierEjection && strings.Contains(f.Resource, "vllm"):
			if !strings.Contains(f.Message, "has 1 endpoint(s)") {
				t.Errorf("the endpoint count from EDS is not used: %s", f.Message)
			}
		}
	}
}

// CheckEnvoy is the start-up check an application runs against its own sidecar.
func TestCheckEnvoy(t *testing.T) {
	srv := adminServer(t, recordedDump(t))
	fs, err := meshlint.CheckEnvoy(context.Background(), srv.URL+"/", meshlint.Options{App: liveApp()})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 15 || !meshlint.HasErrors(fs) {
		t.Fatalf("%d findings: %v", len(fs), briefs(fs, ""))
	}
}

func TestEnvoyErrors(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/config_dump" && r.URL.Query().Get("fail") == "" {
			w.Write([]byte(`{"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": 7}]}`))
			return
		}
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer broken.Close()
	notEnvoy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	defer notEnvoy.Close()
	for _, tc := range []struct{ url, msg string }{
		{"127.0.0.1:15000", "must be an http:// URL"},
		{broken.URL + "/down", "the admin interface answered 503"},
		{broken.URL, "not an Envoy config dump"},
		{notEnvoy.URL, "not an Envoy config dump"},
	} {
		_, err := meshlint.ReadEnvoy(context.Background(), tc.url, broken.Client())
		var pe *meshlint.ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), strings.TrimSuffix(tc.url, "/down")) {
			t.Errorf("%s: %v; want %q", tc.url, err, tc.msg)
		}
	}
	// A cancelled context ends the request.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := meshlint.CheckEnvoy(ctx, notEnvoy.URL, meshlint.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// Envoy's route matching as the check evaluates it: :method headers, regexes,
// path-separated prefixes, conditions that leave paths to later routes, and a
// virtual-host retry policy.
func TestEnvoyRouteMatches(t *testing.T) {
	action := func(timeout time.Duration) *routev3.Route_Route {
		return &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: vllmCluster}, Timeout: durationpb.New(timeout),
		}}
	}
	method := func(m string, invert bool) []*routev3.HeaderMatcher {
		return []*routev3.HeaderMatcher{{Name: ":method", InvertMatch: invert, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m}},
		}}}
	}
	rc := &routev3.RouteConfiguration{Name: "8000", VirtualHosts: []*routev3.VirtualHost{{
		Name: "vllm", Domains: []string{"vllm.ml.svc.cluster.local:8000"},
		RetryPolicy: &routev3.RetryPolicy{RetryOn: "5xx"}, // Envoy's default num_retries: 1
		Routes: []*routev3.Route{
			// GET only: carries no LLM call, whatever its timeout.
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v1/.*"}}, Headers: method("GET", false)}, Action: action(time.Second)},
			// Not POST, inverted: the same.
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/v1/"}, Headers: method("POST", true)}, Action: action(time.Second)},
			// A header condition: carries chat, leaves it to later routes too.
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/v1/chat/completions"},
				Headers: []*routev3.HeaderMatcher{{Name: "x-tier", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}, Action: action(900 * time.Second)},
			// Takes chat and completions for good.
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v1/(chat/)?completions"}}}, Action: action(0)},
			// Only embeddings and responses are left for it.
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: action(20 * time.Second)},
		},
	}}}
	routes := mustAny(t, &adminv3.RoutesConfigDump{StaticRouteConfigs: []*adminv3.RoutesConfigDump_StaticRouteConfig{{RouteConfig: mustAny(t, rc)}}})
	dump, err := protojson.Marshal(&adminv3.ConfigDump{Configs: []*anypb.Any{routes}})
	if err != nil {
		t.Fatal(err)
	}
	srv := adminServer(t, dump)
	fs, err := meshlint.CheckEnvoy(context.Background(), srv.URL, meshlint.Options{LLMHosts: []string{"vllm.ml.svc.cluster.local"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		// The virtual host's retry policy, reported once for the route it hurts most
		// (embeddings: 2 mesh tries × 3 app attempts).
		"error retry-amplification RouteConfiguration/8000 virtual_hosts[0].retry_policy.num_retries :0",
		"warning retry-non-idempotent RouteConfiguration/8000 virtual_hosts[0].retry_policy.retry_on :0",
		"warning stream-timeout RouteConfiguration/8000 virtual_hosts[0].routes[2].route.timeout :0",
		"error stream-timeout RouteConfiguration/8000 virtual_hosts[0].routes[4].route.timeout :0",
		"error timeout-order RouteConfiguration/8000 virtual_hosts[0].routes[4].route.timeout :0",
	}
	if got := briefs(fs, ""); !slices.Equal(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
