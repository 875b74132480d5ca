package transport_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infermesh/infermesh/transport"
)

// fakeAgent is a fake Istio pilot-agent on a loopback port: /healthz/ready answers 503 until
// readyAfter probes were made, and POST /quitquitquit is recorded.
type fakeAgent struct {
	srv        *httptest.Server
	probes     atomic.Int64
	quits      atomic.Int64
	readyAfter int64 // <0: never ready
}

func newFakeAgent(t *testing.T, readyAfter int64) *fakeAgent {
	t.Helper()
	a := &fakeAgent{readyAfter: readyAfter}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/ready", func(w http.ResponseWriter, r *http.Request) {
		n := a.probes.Add(1)
		if a.readyAfter < 0 || n <= a.readyAfter {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /quitquitquit", func(w http.ResponseWriter, r *http.Request) {
		a.quits.Add(1)
		w.WriteHeader(http.StatusOK)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) addr() string { return a.srv.Listener.Addr().String() }

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func writeAnnotations(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "annotations")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

const sidecarStatus = `sidecar.istio.io/status="{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"],\"volumes\":[\"istio-envoy\"],\"imagePullSecrets\":null,\"revision\":\"canary\"}"`

func TestDetectMesh(t *testing.T) {
	t.Parallel()
	ready := newFakeAgent(t, 0)
	notReady := newFakeAgent(t, -1)
	missing := filepath.Join(t.TempDir(), "none")
	noEnv := env(nil)
	tests := []struct {
		name string
		c    transport.DetectConfig
		want transport.Mesh
	}{
		{"nothing", transport.DetectConfig{ReadinessAddr: closedAddr(t), AnnotationsPath: missing, LookupEnv: noEnv},
			transport.Mesh{}},
		{"probe ready", transport.DetectConfig{ReadinessAddr: ready.addr(), AnnotationsPath: missing, LookupEnv: noEnv},
			transport.Mesh{Kind: transport.MeshIstioSidecar, SidecarReady: true, Evidence: "readiness " + ready.addr() + " answered 200"}},
		{"probe not ready", transport.DetectConfig{ReadinessAddr: notReady.addr(), AnnotationsPath: missing, LookupEnv: noEnv},
			transport.Mesh{Kind: transport.MeshIstioSidecar, Evidence: "readiness " + notReady.addr() + " answered 503"}},
		{"annotation and probe", transport.DetectConfig{ReadinessAddr: ready.addr(), LookupEnv: noEnv,
			AnnotationsPath: writeAnnotations(t, `kubectl.kubernetes.io/default-container="app"`, sidecarStatus)},
			transport.Mesh{Kind: transport.MeshIstioSidecar, SidecarReady: true, Revision: "canary",
				Evidence: "annotation sidecar.istio.io/status; readiness " + ready.addr() + " answered 200"}},
		{"annotation without probe", transport.DetectConfig{ReadinessAddr: closedAddr(t), LookupEnv: noEnv,
			AnnotationsPath: writeAnnotations(t, sidecarStatus)},
			transport.Mesh{Kind: transport.MeshIstioSidecar, Revision: "canary", Evidence: "annotation sidecar.istio.io/status"}},
		{"ambient", transport.DetectConfig{ReadinessAddr: ready.addr(), LookupEnv: noEnv,
			AnnotationsPath: writeAnnotations(t, `ambient.istio.io/redirection="enabled"`)},
			transport.Mesh{Kind: transport.MeshAmbient, Evidence: "annotation ambient.istio.io/redirection=enabled"}},
		{"ambient disabled", transport.DetectConfig{ReadinessAddr: closedAddr(t), LookupEnv: noEnv,
			AnnotationsPath: writeAnnotations(t, `ambient.istio.io/redirection="disabled"`)},
			transport.Mesh{}},
		{"grpc agent", transport.DetectConfig{ReadinessAddr: ready.addr(),
			LookupEnv:       env(map[string]string{"GRPC_XDS_BOOTSTRAP": "/etc/istio/proxy/grpc-bootstrap.json"}),
			AnnotationsPath: writeAnnotations(t, `sidecar.istio.io/status="{\"templates\":[\"grpc-agent\"],\"revision\":\"default\"}"`)},
			transport.Mesh{Kind: transport.MeshProxylessGRPC, Revision: "default", XDSBootstrap: "/etc/istio/proxy/grpc-bootstrap.json",
				Evidence: "annotation sidecar.istio.io/status"}},
		{"xds env", transport.DetectConfig{ReadinessAddr: ready.addr(), AnnotationsPath: missing,
			LookupEnv: env(map[string]string{"GRPC_XDS_BOOTSTRAP": "/bootstrap.json"})},
			transport.Mesh{Kind: transport.MeshProxylessGRPC, XDSBootstrap: "/bootstrap.json", Evidence: "GRPC_XDS_BOOTSTRAP is set"}},
		{"probe disabled", transport.DetectConfig{ReadinessAddr: ready.addr(), AnnotationsPath: missing, LookupEnv: noEnv, DisableProbe: true},
			transport.Mesh{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := transport.DetectMesh(context.Background(), tt.c)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("DetectMesh =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestDetectMeshErrors(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		c    transport.DetectConfig
		want string
	}{
		{"bad addr", context.Background(), transport.DetectConfig{ReadinessAddr: "localhost"}, `DetectConfig.ReadinessAddr "localhost"`},
		{"bad path", context.Background(), transport.DetectConfig{ReadinessPath: "healthz"}, `DetectConfig.ReadinessPath "healthz"`},
		{"bad timeout", context.Background(), transport.DetectConfig{ProbeTimeout: -1}, "DetectConfig.ProbeTimeout -1ns"},
		{"unreadable annotations", context.Background(), transport.DetectConfig{AnnotationsPath: t.TempDir(), DisableProbe: true}, "reading annotations file"},
		{"canceled", canceled, transport.DetectConfig{ReadinessAddr: closedAddr(t), AnnotationsPath: filepath.Join(t.TempDir(), "x"), LookupEnv: env(nil)}, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := transport.DetectMesh(tt.ctx, tt.c); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DetectMesh error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestMeshPresetAndString(t *testing.T) {
	t.Parallel()
	for k, want := range map[transport.MeshKind]struct {
		s string
		p transport.Preset
	}{
		transport.MeshNone:          {"none", transport.PresetDirect},
		transport.MeshIstioSidecar:  {"istio-sidecar", transport.PresetSidecar},
		transport.MeshAmbient:       {"ambient", transport.PresetDirect},
		transport.MeshProxylessGRPC: {"proxyless-grpc", transport.PresetDirect},
		9:                           {"MeshKind(9)", transport.PresetDirect},
	} {
		if k.String() != want.s || (transport.Mesh{Kind: k}).Preset() != want.p {
			t.Errorf("%d: String %q Preset %v", int(k), k.String(), (transport.Mesh{Kind: k}).Preset())
		}
	}
}

func TestWaitForSidecar(t *testing.T) {
	t.Parallel()
	t.Run("becomes ready", func(t *testing.T) {
		t.Parallel()
		a := newFakeAgent(t, 3)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := transport.WaitForSidecar(ctx, a.addr()); err != nil {
			t.Fatal(err)
		}
		if n := a.probes.Load(); n != 4 {
			t.Errorf("probed %d times, want 4", n)
		}
	})
	t.Run("never ready", func(t *testing.T) {
		t.Parallel()
		a := newFakeAgent(t, -1)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := transport.WaitForSidecar(ctx, a.addr())
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last probe: HTTP 503") {
			t.Errorf("err = %v, want a deadline error naming HTTP 503", err)
		}
	})
	t.Run("nobody listening", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := transport.WaitForSidecar(ctx, closedAddr(t))
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("err = %v, want a deadline error naming the dial error", err)
		}
	})
	t.Run("bad addr", func(t *testing.T) {
		t.Parallel()
		if err := transport.WaitForSidecar(context.Background(), "no-port"); err == nil || !strings.Contains(err.Error(), `"no-port"`) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestQuitSidecar(t *testing.T) {
	t.Parallel()
	a := newFakeAgent(t, 0)
	if err := transport.QuitSidecar(context.Background(), a.addr()); err != nil {
		t.Fatal(err)
	}
	if a.quits.Load() != 1 {
		t.Errorf("agent got %d quit requests, want 1", a.quits.Load())
	}
	// A server without the endpoint answers 404 (its GET-only mux would say 405).
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	if err := transport.QuitSidecar(context.Background(), other.Listener.Addr().String()); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("err = %v, want HTTP 404", err)
	}
	if err := transport.QuitSidecar(context.Background(), closedAddr(t)); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, want connection refused", err)
	}
	if err := transport.QuitSidecar(context.Background(), "bad"); err == nil {
		t.Error("bad address accepted")
	}
}
