package meshlint_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/meshlint"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// checkFiles reads the app (infermesh's defaults when app is "") and the mesh files,
// and runs the check.
func checkFiles(t *testing.T, app string, opts meshlint.Options, files ...string) []meshlint.Finding {
	t.Helper()
	if app != "" {
		f, err := os.Open(app)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		d, err := meshlint.ReadApp(app, f)
		if err != nil {
			t.Fatal(err)
		}
		opts.App, opts.AppFile = &d, app
	}
	var m meshlint.Mesh
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		err = m.ReadYAML(name, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	fs, err := meshlint.Check(&m, opts)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// checkYAML checks one YAML text.
func checkYAML(t *testing.T, yaml string, opts meshlint.Options) []meshlint.Finding {
	t.Helper()
	var m meshlint.Mesh
	if err := m.ReadYAML("test.yaml", strings.NewReader(yaml)); err != nil {
		t.Fatal(err)
	}
	fs, err := meshlint.Check(&m, opts)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// brief is a finding without its prose: "severity rule resource path line".
func brief(f meshlint.Finding) string {
	return fmt.Sprintf("%s %s %s %s :%d", f.Severity, f.Rule, f.Resource, f.Path, f.Line)
}

func briefs(fs []meshlint.Finding, rule string) []string {
	var out []string
	for _, f := range fs {
		if rule == "" || f.Rule == rule {
			out = append(out, brief(f))
		}
	}
	return out
}

// Each rule fires on testdata/rules/<rule>/bad.yaml exactly as listed, and nothing at
// all fires on good.yaml, the same resources corrected. An app.yaml beside them is the
// app's side of both; without one it is infermesh's defaults.
func TestRulesGolden(t *testing.T) {
	want := map[string][]string{
		meshlint.RuleStreamTimeout: {
			"error stream-timeout VirtualService/ml/vllm spec.http[0].timeout :15",
			"warning stream-timeout VirtualService/ml/vllm spec.http[1].timeout :24",
			"error stream-timeout VirtualService/ml/vllm spec.http[2].retries.perTryTimeout :35",
		},
		meshlint.RuleRetryAmplification: {
			"error retry-amplification ServiceEntry/llm/openai spec.hosts[0] :10",
			"error retry-amplification VirtualService/ml/embedder spec.http[0].retries.attempts :33",
		},
		meshlint.RuleTimeoutOrder: {
			"error timeout-order VirtualService/ml/embedder spec.http[0].timeout :13",
			"warning timeout-order VirtualService/ml/reranker spec.http[0].retries.perTryTimeout :35",
		},
		meshlint.RuleRetryNonIdempotent: {
			"warning retry-non-idempotent VirtualService/ml/vllm spec.http[0].retries.retryOn :15",
		},
		meshlint.RuleConnChurn: {
			"warning conn-churn DestinationRule/llm/openai spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection :11",
		},
		meshlint.RulePoolOverflow: {
			"error pool-overflow DestinationRule/llm/openai spec.trafficPolicy.connectionPool.http.http2MaxRequests :11",
			"warning pool-overflow DestinationRule/llm/anthropic spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests :23",
			"error pool-overflow DestinationRule/llm/mistral spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests :37",
		},
		meshlint.RuleAffinityHeader: {
			"warning affinity-header App/app.yaml affinityHeader :0",
			"warning affinity-header DestinationRule/ml/llama spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName :40",
		},
		meshlint.RuleOutlierEjection: {
			"error outlier-ejection DestinationRule/llm/openai spec.trafficPolicy.outlierDetection.maxEjectionPercent :11",
			"error outlier-ejection DestinationRule/llm/local-gateway spec.trafficPolicy.outlierDetection.minHealthPercent :52",
			"warning outlier-ejection DestinationRule/ml/vllm spec.trafficPolicy.outlierDetection.minHealthPercent :81",
		},
	}
	for _, r := range meshlint.Rules() {
		t.Run(r.ID, func(t *testing.T) {
			dir := filepath.Join("testdata", "rules", r.ID)
			app := filepath.Join(dir, "app.yaml")
			if _, err := os.Stat(app); err != nil {
				app = ""
			}
			got := briefs(checkFiles(t, app, meshlint.Options{}, filepath.Join(dir, "bad.yaml")), r.ID)
			if !slices.Equal(got, want[r.ID]) {
				t.Errorf("bad.yaml:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want[r.ID], "\n     "))
			}
			if good := checkFiles(t, app, meshlint.Options{}, filepath.Join(dir, "good.yaml")); len(good) > 0 {
				t.Errorf("good.yaml has findings: %s", strings.Join(briefs(good, ""), "; "))
			}
		})
	}
}

// vllmChat is a VirtualService for an in-mesh vLLM server with one route, for chat
// completions; fields are the route's further lines, each indented by four spaces.
func vllmChat(fields string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vllm, namespace: ml}
spec:
  hosts: [vllm]
  http:
  - match: [{uri: {prefix: /v1/chat/completions}}]
    route: [{destination: {host: vllm}}]
` + fields
}

// The figures of retry-amplification: naive and mesh-aware, with Istio's implicit
// default, an EnvoyFilter that makes the mesh's retries visible, and the SDK's retries.
func TestRetryAmplificationFigures(t *testing.T) {
	const attemptCounts = `---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: attempt-count, namespace: istio-system}
spec:
  configPatches:
  - applyTo: VIRTUAL_HOST
    match: {context: SIDECAR_OUTBOUND}
    patch:
      operation: MERGE
      value: {include_attempt_count_in_response: true}
`
	for _, tc := range []struct {
		name, retries, extra string
		sdkRetries           int
		appAttempts          int    // of the chat route; 0 keeps the default, 2
		want                 string // "" for no finding
		figures              string
	}{
		// The thresholds: error above 4, warning above 2.
		{name: "5 is an error", retries: "    retries: {attempts: 3}\n", extra: attemptCounts, want: "error", figures: "Up to 5 upstream requests"},
		{name: "3 is a warning", retries: "    retries: {attempts: 2}\n", extra: attemptCounts, appAttempts: 1, want: "warning", figures: "Up to 3 upstream requests"},
		{name: "2 is silent", retries: "    retries: {attempts: 1}\n", appAttempts: 1},
		{name: "istio default", want: "error", figures: "Up to 6 upstream requests", sdkRetries: 2},
		{name: "istio default naive", want: "error", figures: "3 × 2 × 3 SDK tries = 18", sdkRetries: 2},
		{name: "visible attempt counts", extra: attemptCounts, want: "warning", figures: "Up to 4 upstream requests"},
		{name: "one mesh retry visible", retries: "    retries: {attempts: 1}\n", extra: attemptCounts, want: "warning", figures: "Up to 3 upstream requests"},
		{name: "one mesh retry", retries: "    retries: {attempts: 1}\n", want: "warning", figures: "Up to 4 upstream requests"},
		{name: "four mesh retries", retries: "    retries: {attempts: 4, retryOn: connect-failure}\n", want: "error", figures: "5 mesh tries (4 retries on connect-failure) × 2 app attempts"},
		{name: "mesh retries off", retries: "    retries: {attempts: 0}\n"},
		{name: "retries without attempts are off", retries: "    retries: {retryOn: connect-failure}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := llmclient.DefaultDescription()
			d.SDKRetries = tc.sdkRetries
			if tc.appAttempts > 0 {
				d.Routes[0].Attempts = tc.appAttempts
			}
			fs := checkYAML(t, vllmChat(tc.retries)+tc.extra, meshlint.Options{App: &d})
			var got []meshlint.Finding
			for _, f := range fs {
				if f.Rule == meshlint.RuleRetryAmplification {
					got = append(got, f)
				}
			}
			if tc.want == "" {
				if len(got) > 0 {
					t.Fatalf("unexpected %s", got[0].Message)
				}
				return
			}
			if len(got) != 1 || string(got[0].Severity) != tc.want || !strings.Contains(got[0].Message, tc.figures) {
				t.Fatalf("got %+v; want one %s with %q", got, tc.want, tc.figures)
			}
		})
	}
	// The same visibility given as an option rather than an EnvoyFilter in the input.
	fs := checkYAML(t, vllmChat(""), meshlint.Options{AttemptCountInResponse: true})
	if len(fs) != 1 || fs[0].Severity != meshlint.SeverityWarning {
		t.Fatalf("AttemptCountInResponse: %v", briefs(fs, ""))
	}
}

// A hash on a header, with an app that sends none.
func TestAffinityHeaderWithoutAppHeader(t *testing.T) {
	fs := checkYAML(t, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: openai, namespace: llm}
spec:
  host: api.openai.com
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-session-id}
`, meshlint.Options{})
	if got := briefs(fs, ""); len(got) != 1 || !strings.Contains(fs[0].Message, "the app sends no affinity header") {
		t.Fatalf("got %v", got)
	}
}

// A host is an LLM host when named with -llm-host; otherwise a DestinationRule for an
// unknown host is not checked.
func TestLLMHostFlag(t *testing.T) {
	const dr = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: triton, namespace: ml}
spec:
  host: triton
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 1}}
`
	if fs := checkYAML(t, dr, meshlint.Options{}); len(fs) != 0 {
		t.Fatalf("an unknown host was checked: %v", briefs(fs, ""))
	}
	// A gateway's catch-all host does not make its routes LLM routes.
	const gateway = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: web}
spec:
  hosts: ["*"]
  gateways: [istio-system/ingress]
  http:
  - match: [{uri: {prefix: /}}]
    timeout: 5s
    route: [{destination: {host: web}}]
`
	if fs := checkYAML(t, gateway, meshlint.Options{}); len(fs) != 0 {
		t.Fatalf("a catch-all host was checked: %v", briefs(fs, ""))
	}
	fs := checkYAML(t, dr, meshlint.Options{LLMHosts: []string{"*.ml.svc.cluster.local"}})
	if got := briefs(fs, ""); !slices.Equal(got, []string{"warning conn-churn DestinationRule/ml/triton spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection :7"}) {
		t.Fatalf("got %v", got)
	}
}

// Routes are taken in order: a path an earlier route takes unconditionally never
// reaches a later one, a header condition leaves it to later routes too, and a GET-only
// route carries no LLM call.
func TestRouteOrderAndConditions(t *testing.T) {
	fs := checkYAML(t, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vllm, namespace: ml}
spec:
  hosts: [vllm]
  http:
  - match: [{uri: {prefix: /v1/models}}, {uri: {prefix: /v1/chat}, method: {exact: GET}}]
    timeout: 1s
    retries: {attempts: 0}
    route: [{destination: {host: vllm}}]
  - match: [{uri: {prefix: /v1/chat/completions}, headers: {x-tier: {exact: batch}}}]
    timeout: 900s
    retries: {attempts: 0}
    route: [{destination: {host: vllm}}]
  - match: [{uri: {prefix: /V1/, }, ignoreUriCase: true}]
    retries: {attempts: 0}
    route: [{destination: {host: vllm}}]
  - timeout: 5s
    retries: {attempts: 0}
    route: [{destination: {host: vllm}}]
`, meshlint.Options{})
	got := briefs(fs, "")
	want := []string{"warning stream-timeout VirtualService/ml/vllm spec.http[1].timeout :12"}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

// The app's streams bounded by MaxDuration: the mesh timeout must cover it, and then
// nothing fires.
func TestStreamTimeoutWithMaxDuration(t *testing.T) {
	d := llmclient.DefaultDescription()
	d.Routes[0].Stream.MaxDuration = llmclient.Duration(600e9)
	for timeout, want := range map[string][]string{
		"300s": {"error stream-timeout VirtualService/ml/vllm spec.http[0].timeout :9"},
		"600s": nil,
	} {
		yaml := vllmChat("    timeout: " + timeout + "\n    retries: {attempts: 0}\n")
		if got := briefs(checkYAML(t, yaml, meshlint.Options{App: &d}), ""); !slices.Equal(got, want) {
			t.Errorf("timeout %s: got %v, want %v", timeout, got, want)
		}
	}
}

func TestCheckRejectsInvalidApp(t *testing.T) {
	d := llmclient.DefaultDescription()
	d.Routes[1].Attempts = 0
	_, err := meshlint.Check(&meshlint.Mesh{}, meshlint.Options{App: &d})
	if err == nil || !strings.Contains(err.Error(), "routes[1].attempts is 0") {
		t.Fatalf("error %v", err)
	}
}

// Each threshold on both sides of its boundary.
func TestThresholds(t *testing.T) {
	dr := func(policy string) string {
		return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: openai, namespace: llm}
spec:
  host: api.openai.com
  trafficPolicy:
` + policy
	}
	statics := func(n int) string {
		eps := strings.Repeat("  - address: 10.0.0.1\n", n)
		return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: gpu, namespace: ml}
spec:
  hosts: [gpu.example]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 443, name: tls, protocol: TLS}]
  endpoints:
` + eps + `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: gpu, namespace: ml}
spec:
  host: gpu.example
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, maxEjectionPercent: 50}
`
	}
	conc := llmclient.DefaultDescription()
	conc.Concurrency = 64
	for _, tc := range []struct {
		name, yaml string
		app        *llmclient.Description
		llmHost    string
		want       []string // "severity rule" of each finding
	}{
		{"stream timeout below first token + idle", vllmChat("    timeout: 209s\n    retries: {attempts: 0}\n"), nil, "", []string{"error stream-timeout"}},
		{"stream timeout at first token + idle", vllmChat("    timeout: 210s\n    retries: {attempts: 0}\n"), nil, "", []string{"warning stream-timeout"}},
		{"per-try below first token", vllmChat("    retries: {attempts: 0, perTryTimeout: 149s}\n"), nil, "", []string{"error stream-timeout", "error timeout-order"}},
		{"per-try at first token", vllmChat("    retries: {attempts: 0, perTryTimeout: 150s}\n"), nil, "", nil},
		{"route timeout below app per-try", vllmChat("    timeout: 149s\n    retries: {attempts: 0}\n"), nil, "", []string{"error stream-timeout", "error timeout-order"}},
		{"mesh tries fit", vllmChat("    timeout: 450s\n    retries: {attempts: 2, perTryTimeout: 150s, retryOn: connect-failure}\n"), nil, "", []string{"warning stream-timeout", "error retry-amplification"}},
		{"mesh tries do not fit", vllmChat("    timeout: 449s\n    retries: {attempts: 2, perTryTimeout: 150s, retryOn: connect-failure}\n"), nil, "", []string{"warning stream-timeout", "error retry-amplification", "warning timeout-order"}},
		{"100 requests per connection", dr("    connectionPool: {http: {maxRequestsPerConnection: 100}}\n"), nil, "", []string{"warning conn-churn"}},
		{"101 requests per connection", dr("    connectionPool: {http: {maxRequestsPerConnection: 101}}\n"), nil, "", nil},
		{"http2MaxRequests below concurrency", dr("    connectionPool: {http: {http2MaxRequests: 63}}\n"), &conc, "", []string{"error pool-overflow"}},
		{"http2MaxRequests at concurrency", dr("    connectionPool: {http: {http2MaxRequests: 64}}\n"), &conc, "", nil},
		{"no concurrency declared", dr("    connectionPool: {http: {http2MaxRequests: 1}}\n"), nil, "", nil},
		{"maxConnections + pending at concurrency", dr("    connectionPool: {tcp: {maxConnections: 32}, http: {http1MaxPendingRequests: 32}}\n"), &conc, "", []string{"warning pool-overflow"}},
		{"one static endpoint", statics(1), nil, "gpu.example", []string{"error outlier-ejection"}},
		{"two static endpoints, half ejectable", statics(2), nil, "gpu.example", nil},
		{"panic mode on", dr("    outlierDetection: {consecutive5xxErrors: 3, maxEjectionPercent: 100, minHealthPercent: 1}\n"), nil, "", nil},
		{"external host, unknown endpoints", dr("    outlierDetection: {consecutive5xxErrors: 3}\n"), nil, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := meshlint.Options{App: tc.app}
			if tc.llmHost != "" {
				opts.LLMHosts = []string{tc.llmHost}
			}
			var got []string
			for _, f := range checkYAML(t, tc.yaml, opts) {
				got = append(got, string(f.Severity)+" "+f.Rule)
			}
			slices.Sort(got)
			slices.Sort(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
