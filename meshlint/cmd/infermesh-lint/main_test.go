package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testdata = "../../testdata"

type result struct {
	code           int
	stdout, stderr string
}

func runCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func TestRunExitCodes(t *testing.T) {
	realistic := []string{"-app", testdata + "/realistic/app.json", testdata + "/realistic/mesh.yaml"}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: x\n spec: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(testdata + "/rules/stream-timeout/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string // a substring, when not empty
		stderr string
	}{
		{name: "errors found", args: realistic, code: 1, stdout: "11 error(s), 7 warning(s), 0 info\n"},
		{name: "clean", args: []string{testdata + "/rules/stream-timeout/good.yaml"}, code: 0, stdout: "no findings\n"},
		{name: "warnings only exit 0", args: []string{testdata + "/rules/conn-churn/bad.yaml"}, code: 0, stdout: "0 error(s), 1 warning(s)"},
		{name: "stdin by default", stdin: string(good), code: 0, stdout: "no findings"},
		{name: "stdin as -", stdin: string(good), args: []string{"-"}, code: 0, stdout: "no findings"},
		{name: "stdin named in findings", stdin: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: o, namespace: llm}\nspec: {host: api.openai.com, trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}}\n",
			code: 0, stdout: "stdin:4: warning [conn-churn] DestinationRule/llm/o"},
		{name: "flags override the app", args: []string{"-concurrency", "64", testdata + "/rules/pool-overflow/bad.yaml"}, code: 1, stdout: "2 error(s), 1 warning(s)"},
		{name: "bad YAML", args: []string{bad}, code: 2, stderr: bad + ":4: did not find expected key"},
		{name: "bad YAML on stdin", stdin: "a: [\n", code: 2, stderr: "stdin:1: "},
		{name: "missing file", args: []string{"/no/such/file.yaml"}, code: 2, stderr: "/no/such/file.yaml"},
		{name: "bad app file", args: []string{"-app", bad, testdata + "/realistic/mesh.yaml"}, code: 2, stderr: bad + ":"},
		{name: "unknown format", args: []string{"-format", "xml"}, code: 2, stderr: `-format "xml"`},
		{name: "unknown flag", args: []string{"-nope"}, code: 2, stderr: "flag provided but not defined"},
		{name: "live mode takes no files", args: []string{"-envoy-admin", "http://127.0.0.1:15000", "x.yaml"}, code: 2, stderr: "takes no files"},
		{name: "help", args: []string{"-h"}, code: 0, stderr: "usage: infermesh-lint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCmd(t, tc.stdin, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
		})
	}
}

// The JSON and SARIF outputs of the command are the library's, for the same findings.
func TestRunFormats(t *testing.T) {
	args := []string{"-app", testdata + "/realistic/app.json", testdata + "/realistic/mesh.yaml"}
	r := runCmd(t, "", append([]string{"-format", "json"}, args...)...)
	var doc struct {
		Findings []map[string]string `json:"findings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != 1 || len(doc.Findings) != 18 {
		t.Fatalf("json: exit %d, %v, %d findings", r.code, err, len(doc.Findings))
	}
	if f := doc.Findings[0]; f["rule"] != "conn-churn" || f["resource"] != "DestinationRule/chat-app/openai" || len(f) != 6 {
		t.Errorf("first finding %v", f)
	}
	want, err := os.ReadFile(testdata + "/realistic/want.sarif")
	if err != nil {
		t.Fatal(err)
	}
	// The golden file names the mesh file as the library test reads it.
	r = runCmd(t, "", append([]string{"-format", "sarif"}, args...)...)
	if got := strings.ReplaceAll(r.stdout, testdata+"/", "testdata/"); got != string(want) || r.code != 1 {
		t.Errorf("sarif: exit %d, output differs from testdata/realistic/want.sarif:\n%s", r.code, r.stdout)
	}
}

// -envoy-admin reads a sidecar's config dump: here one route whose 30 s timeout cuts
// chat streams.
func TestRunLive(t *testing.T) {
	rc, err := anypb.New(&routev3.RouteConfiguration{Name: "80", VirtualHosts: []*routev3.VirtualHost{{
		Name: "api.openai.com:80", Domains: []string{"api.openai.com"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|80||api.openai.com"},
				Timeout:          durationpb.New(30 * time.Second),
			}},
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	routes, err := anypb.New(&adminv3.RoutesConfigDump{DynamicRouteConfigs: []*adminv3.RoutesConfigDump_DynamicRouteConfig{{RouteConfig: rc}}})
	if err != nil {
		t.Fatal(err)
	}
	dump, err := protojson.Marshal(&adminv3.ConfigDump{Configs: []*anypb.Any{routes}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/config_dump" {
			w.Write(dump)
		}
	}))
	defer srv.Close()
	r := runCmd(t, "", "-envoy-admin", srv.URL, "-format", "json")
	if r.code != 1 || !strings.Contains(r.stdout, `"resource": "RouteConfiguration/80"`) ||
		!strings.Contains(r.stdout, `"path": "virtual_hosts[0].routes[0].route.timeout"`) {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	srv.Close()
	if r := runCmd(t, "", "-envoy-admin", srv.URL, "-timeout", "2s"); r.code != 2 || !strings.Contains(r.stderr, srv.URL+"/config_dump") {
		t.Fatalf("admin down: exit %d, %s", r.code, r.stderr)
	}
}
