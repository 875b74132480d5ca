package transport_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infermesh/infermesh/transport"
)

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	tr, err := transport.New(transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if tr == http.DefaultTransport {
		t.Fatal("New returned http.DefaultTransport")
	}
	if got := tr.MaxIdleConnsPerHost; got != 64 {
		t.Errorf("MaxIdleConnsPerHost = %d, want 64", got)
	}
	if got := tr.MaxIdleConns; got != transport.DefaultMaxIdleConns {
		t.Errorf("MaxIdleConns = %d, want %d", got, transport.DefaultMaxIdleConns)
	}
	if got := tr.IdleConnTimeout; got != 50*time.Second {
		t.Errorf("IdleConnTimeout = %v, want 50s", got)
	}
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLS MinVersion = %+v, want TLS 1.2", tr.TLSClientConfig)
	}
	if tr.HTTP2 == nil || tr.HTTP2.SendPingTimeout != 30*time.Second || tr.HTTP2.PingTimeout != 15*time.Second {
		t.Errorf("HTTP2 = %+v, want ping health checks 30s/15s", tr.HTTP2)
	}
	if p := tr.Protocols; p == nil || !p.HTTP1() || !p.HTTP2() || p.UnencryptedHTTP2() {
		t.Errorf("Protocols = %v, want HTTP1 and HTTP2", p)
	}
	if tr.Proxy == nil {
		t.Error("direct preset should take the proxy from the environment")
	}
	tr2, _ := transport.New(transport.Config{})
	if tr == tr2 {
		t.Error("New returned the same transport twice")
	}
}

func TestNewSidecarPreset(t *testing.T) {
	t.Parallel()
	tr, err := transport.New(transport.Config{Preset: transport.PresetSidecar})
	if err != nil {
		t.Fatal(err)
	}
	if p := tr.Protocols; p == nil || !p.HTTP1() || p.HTTP2() || p.UnencryptedHTTP2() {
		t.Errorf("Protocols = %v, want HTTP1 only", p)
	}
	if tr.Proxy != nil {
		t.Error("sidecar preset must not use an environment proxy")
	}
	if tr.MaxIdleConnsPerHost != 64 || tr.IdleConnTimeout != 50*time.Second {
		t.Errorf("pool = %d idle per host, %v idle timeout", tr.MaxIdleConnsPerHost, tr.IdleConnTimeout)
	}
}

func TestNewOverrides(t *testing.T) {
	t.Parallel()
	tr, err := transport.New(transport.Config{
		MaxIdleConns: 10, MaxIdleConnsPerHost: 8, MaxConnsPerHost: 16, IdleConnTimeout: time.Second,
		HTTP2SendPingTimeout: 5 * time.Second, HTTP2PingTimeout: 2 * time.Second, H2C: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if tr.MaxIdleConns != 10 || tr.MaxIdleConnsPerHost != 8 || tr.MaxConnsPerHost != 16 || tr.IdleConnTimeout != time.Second {
		t.Errorf("pool fields not applied: %d %d %d %v", tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost, tr.IdleConnTimeout)
	}
	if tr.HTTP2.SendPingTimeout != 5*time.Second || tr.HTTP2.PingTimeout != 2*time.Second {
		t.Errorf("HTTP2 = %+v", tr.HTTP2)
	}
	if p := tr.Protocols; !p.UnencryptedHTTP2() || p.HTTP1() {
		t.Errorf("H2C Protocols = %v, want UnencryptedHTTP2 without HTTP1", p)
	}
}

func TestNewInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    transport.Config
		want string
	}{
		{"preset", transport.Config{Preset: 7}, "Config.Preset Preset(7)"},
		{"idle conns", transport.Config{MaxIdleConns: -1}, "Config.MaxIdleConns -1"},
		{"idle per host", transport.Config{MaxIdleConnsPerHost: -2}, "Config.MaxIdleConnsPerHost -2"},
		{"conns per host", transport.Config{MaxConnsPerHost: -3}, "Config.MaxConnsPerHost -3"},
		{"idle timeout", transport.Config{IdleConnTimeout: -time.Second}, "Config.IdleConnTimeout -1s"},
		{"dial timeout", transport.Config{DialTimeout: -time.Second}, "Config.DialTimeout -1s"},
		{"tls timeout", transport.Config{TLSHandshakeTimeout: -time.Second}, "Config.TLSHandshakeTimeout -1s"},
		{"ping", transport.Config{HTTP2SendPingTimeout: -time.Second}, "Config.HTTP2SendPingTimeout -1s"},
		{"ping timeout", transport.Config{HTTP2PingTimeout: -time.Second}, "Config.HTTP2PingTimeout -1s"},
		{"idle above max", transport.Config{MaxIdleConnsPerHost: 10, MaxConnsPerHost: 5}, "Config.MaxIdleConnsPerHost 10"},
		{"tls min", transport.Config{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS11}}, "Config.TLSClientConfig.MinVersion TLS 1.1"},
		{"tls max", transport.Config{TLSClientConfig: &tls.Config{MaxVersion: tls.VersionTLS10}}, "Config.TLSClientConfig.MaxVersion TLS 1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr, err := transport.New(tt.c)
			if err == nil {
				t.Fatalf("New(%+v) = %v, want an error", tt.c, tr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestTLSConfigClonedAndRaised(t *testing.T) {
	t.Parallel()
	user := &tls.Config{ServerName: "example.test"}
	tr, err := transport.New(transport.Config{TLSClientConfig: user})
	if err != nil {
		t.Fatal(err)
	}
	if tr.TLSClientConfig == user {
		t.Fatal("the caller's tls.Config was not cloned")
	}
	if user.MinVersion != 0 {
		t.Errorf("the caller's tls.Config was modified: MinVersion %x", user.MinVersion)
	}
	if tr.TLSClientConfig.MinVersion != tls.VersionTLS12 || tr.TLSClientConfig.ServerName != "example.test" {
		t.Errorf("cloned config = MinVersion %x ServerName %q", tr.TLSClientConfig.MinVersion, tr.TLSClientConfig.ServerName)
	}
}

// TestTLSMinVersion shows a TLS 1.1-only server is refused while TLS 1.2 works.
func TestTLSMinVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		serverMax  uint16
		wantFailed bool
	}{
		{"tls11 server", tls.VersionTLS11, true},
		{"tls12 server", tls.VersionTLS12, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			}))
			srv.TLS = &tls.Config{MaxVersion: tc.serverMax, MinVersion: tls.VersionTLS10}
			srv.Config.ErrorLog = discardLogger()
			srv.StartTLS()
			defer srv.Close()
			base := srv.Client().Transport.(*http.Transport).TLSClientConfig // trusts the test CA
			tr, err := transport.New(transport.Config{TLSClientConfig: &tls.Config{RootCAs: base.RootCAs}})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if tc.wantFailed {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("request to a %s server succeeded", tls.VersionName(tc.serverMax))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Errorf("negotiated %+v", resp.TLS)
			}
		})
	}
}

// connCounter counts the TCP connections a test server accepts.
type connCounter struct{ n atomic.Int64 }

func (c *connCounter) hook(_ net.Conn, s http.ConnState) {
	if s == http.StateNew {
		c.n.Add(1)
	}
}

// runRounds sends rounds of concurrency requests through rt: the server answers a round
// only when all of its requests are in, so each round needs concurrency connections at
// once, and a transport keeps for the next round only the connections its idle pool
// holds. It returns the number of new connections the server saw.
func runRounds(t *testing.T, rt http.RoundTripper, rounds, concurrency int) int64 {
	t.Helper()
	var cc connCounter
	var mu sync.Mutex
	arrived, full := 0, make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		round := full
		if arrived++; arrived == concurrency {
			arrived, full = 0, make(chan struct{})
			close(round)
		}
		mu.Unlock()
		select {
		case <-round:
		case <-time.After(10 * time.Second): // a round that never fills fails the count
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	srv.Config.ConnState = cc.hook
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: rt}
	for range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, concurrency)
		for range concurrency {
			wg.Go(func() {
				resp, err := client.Get(srv.URL)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	if ci, ok := rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
	return cc.n.Load()
}

// TestPooledConnections: rounds of 64 concurrent requests keep their connections with the
// pooled presets (at most 128 over all rounds), while the standard library's default pool
// of 2 idle connections per host opens at least 62 new ones every round.
func TestPooledConnections(t *testing.T) {
	const rounds, concurrency = 20, 64
	for _, preset := range []transport.Preset{transport.PresetDirect, transport.PresetSidecar} {
		tr, err := transport.New(transport.Config{Preset: preset})
		if err != nil {
			t.Fatal(err)
		}
		pooled := runRounds(t, tr, rounds, concurrency)
		t.Logf("%s preset: %d connections for %d rounds of %d", preset, pooled, rounds, concurrency)
		if pooled > 2*concurrency {
			t.Errorf("%s preset opened %d connections, want at most %d", preset, pooled, 2*concurrency)
		}
	}
	// The standard library's defaults: MaxIdleConnsPerHost 2 (a zero Transport).
	stdlib := runRounds(t, &http.Transport{}, rounds, concurrency)
	t.Logf("stdlib default: %d connections for %d rounds of %d", stdlib, rounds, concurrency)
	if least := int64(concurrency + (rounds-1)*(concurrency-2)); stdlib < least {
		t.Errorf("stdlib default transport opened %d connections, want at least %d: the test no longer shows churn", stdlib, least)
	}
}

func TestH2CEndToEnd(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	defer srv.Close()

	for _, preset := range []transport.Preset{transport.PresetDirect, transport.PresetSidecar} {
		tr, err := transport.New(transport.Config{Preset: preset, H2C: true})
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Transport: tr}
		for range 3 {
			resp, err := client.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || string(body) != "HTTP/2.0" {
				t.Errorf("%s: client saw %s, server saw %s; want HTTP/2 both ways", preset, resp.Proto, body)
			}
		}
		tr.CloseIdleConnections()
	}

	// Without H2C the same server is spoken to in HTTP/1.1.
	tr, _ := transport.New(transport.Config{})
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Errorf("default preset used %s for http://, want HTTP/1.1", resp.Proto)
	}
}

func TestKeepAliveDisabled(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	tr, err := transport.New(transport.Config{KeepAlive: &net.KeepAliveConfig{Enable: false}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestPresetString(t *testing.T) {
	t.Parallel()
	for p, want := range map[transport.Preset]string{
		transport.PresetDirect: "direct", transport.PresetSidecar: "sidecar", 9: "Preset(9)",
	} {
		if got := p.String(); got != want {
			t.Errorf("Preset(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}
