package meshlint_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/meshlint"
)

// One DestinationRule that conn-churn flags, written in each form the reader takes.
func TestReadYAMLForms(t *testing.T) {
	const dr = `apiVersion: networking.istio.io/%s
kind: DestinationRule
metadata:
  name: openai
  namespace: llm
spec:
  host: api.openai.com
  trafficPolicy:
    connectionPool:
      http:
        maxRequestsPerConnection: 10
`
	indent := func(s, by string) string {
		return by + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+by) + "\n"
	}
	v1 := strings.Replace(dr, "%s", "v1", 1)
	for _, tc := range []struct {
		name, input string
		line        int
	}{
		{"v1", v1, 11},
		{"v1beta1", strings.Replace(dr, "%s", "v1beta1", 1), 11},
		{"v1alpha3", strings.Replace(dr, "%s", "v1alpha3", 1), 11},
		{"multi-document with other kinds and empty documents", "---\napiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\n# a comment\n---\n" + v1 + "---\n", 18},
		{"kind: List", "apiVersion: v1\nkind: List\nitems:\n- " + strings.TrimPrefix(indent(v1, "  "), "  "), 14},
		{"kubectl get -o yaml", `apiVersion: v1
items:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"networking.istio.io/v1","kind":"DestinationRule"}
    creationTimestamp: "2026-03-01T10:00:00Z"
    generation: 3
    managedFields:
    - apiVersion: networking.istio.io/v1
      fieldsType: FieldsV1
      fieldsV1:
        f:spec: {}
      manager: kubectl-client-side-apply
      operation: Update
      time: "2026-03-01T10:00:00Z"
    name: openai
    namespace: llm
    resourceVersion: "123456"
    uid: 0b4c5d2e-1111-4a4a-9c9c-123456789abc
  spec:
    host: api.openai.com
    trafficPolicy:
      connectionPool:
        http:
          maxRequestsPerConnection: 10
  status:
    observedGeneration: 3
kind: List
metadata:
  resourceVersion: ""
`, 28},
		{"DestinationRuleList", "apiVersion: networking.istio.io/v1\nkind: DestinationRuleList\nitems:\n- " + strings.TrimPrefix(indent(v1, "  "), "  "), 14},
		{"JSON", `{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
 "metadata": {"name": "openai", "namespace": "llm"},
 "spec": {"host": "api.openai.com", "trafficPolicy": {"connectionPool": {"http": {"maxRequestsPerConnection": 10}}}}}`, 3},
		{"protobuf field names", strings.Replace(strings.Replace(strings.Replace(v1, "trafficPolicy", "traffic_policy", 1),
			"connectionPool", "connection_pool", 1), "maxRequestsPerConnection", "max_requests_per_connection", 1), 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := checkYAML(t, tc.input, meshlint.Options{})
			want := []string{"warning conn-churn DestinationRule/llm/openai spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection :" + strconv.Itoa(tc.line)}
			if got := briefs(fs, ""); !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// Unreadable input is a *ParseError naming the file and the line.
func TestReadYAMLErrors(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		line        int
		msg         string
	}{
		// The parser names the line of the construct it was reading, counted from the
		// start of the file, whatever document it is in.
		{"syntax", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: x\n spec: [\n", 4, "did not find expected key"},
		{"syntax in a later document", "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: ConfigMap\ndata:\n  a: b\n  c: [x\n", 7, "did not find expected ',' or ']'"},
		{"tab indentation", "apiVersion: v1\nkind: ConfigMap\ndata:\n\ta: b\n", 4, "found character that cannot start any token"},
		{"bad duration", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: openai, namespace: llm}\nspec:\n  http:\n  - timeout: 30 seconds\n", 1, "VirtualService llm/openai"},
		{"bad regex", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  http:\n  - match:\n    - uri:\n        regex: '(unclosed'\n", 7, "spec.http[0].match[0].uri"},
		{"not an object", "- a\n- b\n", 1, "expected a Kubernetes object"},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", 1, "object has no kind"},
		{"unknown version", "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: x}\n", 1, "is not v1, v1beta1 or v1alpha3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m meshlint.Mesh
			err := m.ReadYAML("in.yaml", strings.NewReader(tc.input))
			var pe *meshlint.ParseError
			if !errors.As(err, &pe) || pe.File != "in.yaml" || pe.Line != tc.line || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v (%#v); want in.yaml:%d: ...%s", err, pe, tc.line, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "in.yaml:"+strconv.Itoa(tc.line)+": ") {
				t.Errorf("message %q does not start with the file and line", err)
			}
		})
	}
}

func TestReadApp(t *testing.T) {
	const yaml = `# exported by Transport.Describe, then edited
routes:
- name: chat
  prefix: /v1/chat/completions
  timeout: 5m
  perTryTimeout: 150s
  attempts: 2
  hedging: true
  stream: {firstTokenTimeout: 90s, idleTimeout: 30s, maxDuration: 10m}
- {name: default, prefix: "", timeout: 120s, attempts: 1, stream: {firstTokenTimeout: 150s, idleTimeout: 60s}}
sdkRetries: 2
concurrency: 64
affinityHeader: x-session-id
`
	d, err := meshlint.ReadApp("app.yaml", strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	chat := d.Routes[0]
	if chat.Timeout != llmclient.Duration(5*time.Minute) || !chat.Hedging || chat.Stream.MaxDuration != llmclient.Duration(10*time.Minute) ||
		d.SDKRetries != 2 || d.Concurrency != 64 || d.AffinityHeader != "x-session-id" || d.Routes[1].PerTryTimeout != 0 {
		t.Fatalf("read %+v", d)
	}

	for _, tc := range []struct{ name, input, msg string }{
		{"misspelt field", "routes:\n- {prefix: /v1/x, attempts: 1, perTryTimout: 5s}\n", `unknown field "perTryTimout"`},
		{"zero attempts", "routes:\n- {prefix: /v1/x}\n", "routes[0].attempts is 0"},
		{"negative duration", "routes:\n- {prefix: /v1/x, attempts: 1, timeout: -5s}\n", `duration "-5s" is negative`},
		{"duration without unit", "routes:\n- {prefix: /v1/x, attempts: 1, timeout: \"30\"}\n", `missing unit in duration "30"`},
		{"prefix", "routes:\n- {prefix: v1/x, attempts: 1}\n", `routes[0].prefix "v1/x" does not start with /`},
		{"no routes", "sdkRetries: 2\n", "routes: at least one route is needed"},
		{"negative sdk retries", "routes:\n- {prefix: /v1/x, attempts: 1}\nsdkRetries: -1\n", "sdkRetries -1 is negative"},
		{"syntax", "routes:\n- prefix: /v1/x\n attempts: 1\n", "app.yaml:2: did not find expected key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := meshlint.ReadApp("app.yaml", strings.NewReader(tc.input))
			var pe *meshlint.ParseError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "app.yaml:") {
				t.Fatalf("error %v; want one naming app.yaml and %q", err, tc.msg)
			}
		})
	}
}
