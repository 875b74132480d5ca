package proxies

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/infermesh/infermesh/benchmarks/internal/proc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func hop(k Kind, p Protocol, dir string) Hop {
	return Hop{Kind: k, Protocol: p, Listen: "127.0.0.1:18001", Upstream: "127.0.0.1:18002", Dir: dir, Name: "hop1"}
}

func TestConfigKeepAliveOnEveryLeg(t *testing.T) {
	t.Parallel()
	dir := "/tmp/x"
	tests := []struct {
		kind  Kind
		proto Protocol
		want  []string
		not   []string
	}{
		{HAProxy, HTTP1, []string{"bind 127.0.0.1:18001\n", "server up 127.0.0.1:18002\n", "option http-keep-alive", "http-reuse always", "nbthread 1", "timeout http-keep-alive"}, []string{"proto h2"}},
		{HAProxy, H2C, []string{"bind 127.0.0.1:18001 proto h2", "server up 127.0.0.1:18002 proto h2"}, nil},
		{HAProxy, GRPC, []string{"bind 127.0.0.1:18001 proto h2", "server up 127.0.0.1:18002 proto h2"}, nil},
		{Nginx, HTTP1, []string{
			"listen 127.0.0.1:18001;", "server 127.0.0.1:18002;", "keepalive 256;", "keepalive_requests 1000000;",
			"proxy_http_version 1.1;", `proxy_set_header Connection "";`, "proxy_pass http://up;",
			"pid /tmp/x/nginx-hop1.pid;", "client_body_temp_path /tmp/x/", "master_process off;", "daemon off;",
		}, []string{"http2", "grpc_pass"}},
		{Nginx, GRPC, []string{"listen 127.0.0.1:18001 http2;", "grpc_pass grpc://up;", "keepalive 256;"}, []string{"proxy_pass"}},
		{Envoy, HTTP1, []string{"port_value: 18001", "port_value: 18002", "codec_type: AUTO", "http_protocol_options: {}"}, []string{"http2_protocol_options"}},
		{Envoy, GRPC, []string{"http2_protocol_options"}, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.kind, tt.proto), func(t *testing.T) {
			t.Parallel()
			b, err := Config(hop(tt.kind, tt.proto, dir))
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("config lacks %q:\n%s", w, s)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(s, n) {
					t.Errorf("config has %q:\n%s", n, s)
				}
			}
		})
	}
}

func TestConfigRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Config(hop(Nginx, H2C, dir)); err == nil || !strings.Contains(err.Error(), "nginx cannot proxy HTTP/2") {
		t.Errorf("nginx h2c: err = %v", err)
	}
	h := hop(HAProxy, HTTP1, dir)
	h.Listen = "0.0.0.0:80"
	if _, err := Config(h); err == nil || !strings.Contains(err.Error(), "Hop.Listen") {
		t.Errorf("non-loopback listen: err = %v", err)
	}
	h = hop(HAProxy, HTTP1, dir)
	h.Upstream = "10.0.0.1:80"
	if _, err := Config(h); err == nil || !strings.Contains(err.Error(), "Hop.Upstream") {
		t.Errorf("non-loopback upstream: err = %v", err)
	}
	if _, err := Config(hop("squid", HTTP1, dir)); err == nil {
		t.Error("unknown kind: want an error")
	}
	if _, err := Config(hop(HAProxy, "spdy", dir)); err == nil {
		t.Error("unknown protocol: want an error")
	}
	if ok, _ := Envoy.Supports(H2C); !ok {
		t.Error("envoy should carry h2c")
	}
}

// TestProxiesForward runs every installed proxy for each protocol it supports, one hop and
// two hops, in front of a loopback server, and checks requests get through on reused
// connections.
func TestFindMissing(t *testing.T) {
	if _, err := exec.LookPath("envoy"); err == nil {
		t.Skip("envoy is installed")
	}
	_, err := Find(Envoy)
	if err == nil || !strings.Contains(err.Error(), Envoy.InstallHint()) {
		t.Errorf("Find(envoy) = %v, want the install hint", err)
	}
	for _, k := range []Kind{HAProxy, Nginx} {
		if h := k.InstallHint(); h != "apt-get install haproxy nginx" {
			t.Errorf("%s hint %q", k, h)
		}
	}
}

func TestProxiesForward(t *testing.T) {
	for _, k := range Kinds() {
		bin, err := Find(k)
		if err != nil {
			t.Logf("skipping %s: %v", k, err)
			continue
		}
		if v := Version(context.Background(), k, bin); v == "unknown" {
			t.Errorf("%s: no version from %s", k, bin)
		}
		for _, p := range []Protocol{HTTP1, H2C, GRPC} {
			if ok, _ := k.Supports(p); !ok {
				continue
			}
			t.Run(fmt.Sprintf("%s/%s", k, p), func(t *testing.T) {
				forward(t, k, bin, p)
			})
		}
	}
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n chan struct{}
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.n <- struct{}{}:
		default:
		}
	}
	return c, err
}

func forward(t *testing.T, k Kind, bin string, p Protocol) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln, n: make(chan struct{}, 1000)}
	var serve func()
	var stop func()
	if p == GRPC {
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		serve = func() { _ = gs.Serve(cl) }
		stop = gs.Stop
	} else {
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "proto=%s", r.Proto)
		})}
		hs.Protocols = new(http.Protocols)
		hs.Protocols.SetHTTP1(true)
		hs.Protocols.SetUnencryptedHTTP2(true)
		serve = func() { _ = hs.Serve(cl) }
		stop = func() { _ = hs.Close() }
	}
	done := make(chan struct{})
	go func() { serve(); close(done) }()
	defer func() { stop(); <-done }()

	dir := t.TempDir()
	upstream := ln.Addr().String()
	var set proc.Set
	defer func() {
		if err := set.StopAll(2 * time.Second); err != nil {
			t.Error(err)
		}
	}()
	front := upstream
	for i := 2; i >= 1; i-- { // two hops: the server-side one first
		port, err := proc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		h := Hop{Kind: k, Protocol: p, Listen: fmt.Sprintf("127.0.0.1:%d", port), Upstream: front, Dir: dir, Name: fmt.Sprintf("hop%d", i)}
		pr, err := Start(context.Background(), h, bin)
		if err != nil {
			t.Fatal(err)
		}
		set.Add(pr)
		front = h.Listen
	}

	const n = 20
	if p == GRPC {
		cc, err := grpc.NewClient(front, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		hc := healthpb.NewHealthClient(cc)
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	} else {
		tr := &http.Transport{MaxIdleConnsPerHost: 4}
		if p == H2C {
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
		}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		for range n {
			resp, err := c.Post("http://"+front+"/v1/x", "application/json", strings.NewReader(`{"a":1}`))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := "proto=HTTP/1.1"
			if p == H2C {
				want = "proto=HTTP/2.0"
			}
			if resp.StatusCode != 200 || string(b) != want {
				t.Fatalf("status %d body %q, want 200 %q", resp.StatusCode, b, want)
			}
		}
	}
	// Connection reuse on the last leg: far fewer upstream connections than requests (the
	// readiness probe of the proxy in front does not reach the upstream).
	if got := len(cl.n); got < 1 || got > 2 {
		t.Errorf("upstream accepted %d connections for %d requests through 2 hops, want 1 or 2", got, n)
	}
}
