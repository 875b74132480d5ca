package proxies

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/infermesh/infermesh/benchmarks/internal/proc"
)

// Kind is a proxy implementation.
type Kind string

// The proxies the benchmark knows.
const (
	HAProxy Kind = "haproxy"
	Nginx   Kind = "nginx"
	Envoy   Kind = "envoy"
)

// Kinds lists every Kind in the order the benchmark runs them.
func Kinds() []Kind { return []Kind{HAProxy, Nginx, Envoy} }

// Protocol is what travels on both legs of a hop.
type Protocol string

// The protocols of the benchmark.
const (
	// HTTP1 is HTTP/1.1 with keep-alive on both legs.
	HTTP1 Protocol = "http1"
	// H2C is HTTP/2 without TLS (prior knowledge) on both legs.
	H2C Protocol = "h2c"
	// GRPC is gRPC over h2c on both legs.
	GRPC Protocol = "grpc"
)

// Supports reports whether k can carry p on both legs, and if not, why.
func (k Kind) Supports(p Protocol) (bool, string) {
	if k == Nginx && p == H2C {
		return false, "nginx cannot proxy HTTP/2 to an upstream (only grpc_pass speaks HTTP/2 upstream)"
	}
	return true, ""
}

// InstallHint says how to get the binary of k.
func (k Kind) InstallHint() string {
	switch k {
	case Envoy:
		return "put an envoy binary on PATH (https://www.envoyproxy.io/docs/envoy/latest/start/install)"
	default:
		return "apt-get install haproxy nginx"
	}
}

// Hop is one proxy between a listener and its upstream.
type Hop struct {
	// Kind is the proxy.
	Kind Kind
	// Protocol is carried on both legs.
	Protocol Protocol
	// Listen is the host:port the proxy listens on (127.0.0.1).
	Listen string
	// Upstream is the host:port the proxy forwards to.
	Upstream string
	// Dir is a directory the proxy may write to (pid, temp files, logs).
	Dir string
	// Name labels the hop in file names and errors, such as "hop1".
	Name string
}

// ConfigFile returns the path Write puts the configuration at.
func (h Hop) ConfigFile() string {
	ext := map[Kind]string{HAProxy: ".cfg", Nginx: ".conf", Envoy: ".yaml"}[h.Kind]
	return filepath.Join(h.Dir, string(h.Kind)+"-"+h.Name+ext)
}

// Config renders the configuration file of h.
func Config(h Hop) ([]byte, error) {
	if ok, why := h.Kind.Supports(h.Protocol); !ok {
		return nil, errors.New(why)
	}
	if err := checkAddr("Listen", h.Listen); err != nil {
		return nil, err
	}
	if err := checkAddr("Upstream", h.Upstream); err != nil {
		return nil, err
	}
	var t *template.Template
	switch h.Kind {
	case HAProxy:
		t = haproxyTmpl
	case Nginx:
		t = nginxTmpl
	case Envoy:
		t = envoyTmpl
	default:
		return nil, fmt.Errorf("proxies: unknown Kind %q", h.Kind)
	}
	switch h.Protocol {
	case HTTP1, H2C, GRPC:
	default:
		return nil, fmt.Errorf("proxies: unknown Protocol %q", h.Protocol)
	}
	host, port, _ := strings.Cut(h.Upstream, ":")
	lhost, lport, _ := strings.Cut(h.Listen, ":")
	var buf bytes.Buffer
	err := t.Execute(&buf, map[string]any{
		"Hop": h, "H2": h.Protocol != HTTP1, "GRPC": h.Protocol == GRPC,
		"UpHost": host, "UpPort": port, "ListenHost": lhost, "ListenPort": lport,
	})
	return buf.Bytes(), err
}

var addrRE = regexp.MustCompile(`^127\.0\.0\.1:[0-9]{1,5}$`)

func checkAddr(field, addr string) error {
	if !addrRE.MatchString(addr) {
		return fmt.Errorf("proxies: Hop.%s %q is not a 127.0.0.1:port address", field, addr)
	}
	return nil
}

// haproxyTmpl: one thread, keep-alive on both sides, idle server connections shared between
// client connections (http-reuse always), a large HTTP/2 window for tensor-sized bodies.
// maxconn is left to HAProxy, which derives it from the file descriptor limit: a fixed value
// above what the limit allows would stop it from starting.
var haproxyTmpl = template.Must(template.New("haproxy").Parse(`# {{.Hop.Name}}: {{.Hop.Protocol}} {{.Hop.Listen}} -> {{.Hop.Upstream}}
global
    nbthread 1
    tune.h2.initial-window-size 1048576
    tune.h2.max-concurrent-streams 256

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout http-request 30s
    option http-keep-alive
    http-reuse always

frontend fe
    bind {{.Hop.Listen}}{{if .H2}} proto h2{{end}}
    default_backend be

backend be
    server up {{.Hop.Upstream}}{{if .H2}} proto h2{{end}}
`))

// nginxTmpl: a single process (master_process off, so the one process measured is the one
// doing the work and no user switch is needed), keep-alive to clients and to the upstream
// pool, keepalive_requests raised from its default of 1000, no request or response
// buffering to disk (a sidecar streams), gRPC through grpc_pass.
var nginxTmpl = template.Must(template.New("nginx").Parse(`# {{.Hop.Name}}: {{.Hop.Protocol}} {{.Hop.Listen}} -> {{.Hop.Upstream}}
daemon off;
master_process off;
worker_processes 1;
pid {{.Hop.Dir}}/nginx-{{.Hop.Name}}.pid;
error_log {{.Hop.Dir}}/nginx-{{.Hop.Name}}-error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path {{.Hop.Dir}}/nginx-{{.Hop.Name}}-body;
    proxy_temp_path {{.Hop.Dir}}/nginx-{{.Hop.Name}}-proxy;
    fastcgi_temp_path {{.Hop.Dir}}/nginx-{{.Hop.Name}}-fastcgi;
    uwsgi_temp_path {{.Hop.Dir}}/nginx-{{.Hop.Name}}-uwsgi;
    scgi_temp_path {{.Hop.Dir}}/nginx-{{.Hop.Name}}-scgi;

    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_max_body_size 64m;
    client_body_buffer_size 8m;

    upstream up {
        server {{.Hop.Upstream}};
        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }

    server {
        listen {{.Hop.Listen}}{{if .H2}} http2{{end}};
        location / {
{{- if .GRPC}}
            grpc_pass grpc://up;
            grpc_read_timeout 60s;
            grpc_send_timeout 60s;
{{- else}}
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 60s;
{{- end}}
        }
    }
}
`))

// envoyTmpl: one worker (--concurrency 1 on the command line), codec AUTO on the listener
// (HTTP/1.1 or h2c by prior knowledge), HTTP/2 to the upstream for h2c and gRPC.
var envoyTmpl = template.Must(template.New("envoy").Parse(`# {{.Hop.Name}}: {{.Hop.Protocol}} {{.Hop.Listen}} -> {{.Hop.Upstream}}
static_resources:
  listeners:
  - name: listener_{{.Hop.Name}}
    address:
      socket_address: { address: {{.ListenHost}}, port_value: {{.ListenPort}} }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {{.Hop.Name}}
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: up, timeout: 60s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 5s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: { idle_timeout: 60s }
        explicit_http_config:
{{- if .H2}}
          http2_protocol_options: { max_concurrent_streams: 256 }
{{- else}}
          http_protocol_options: {}
{{- end}}
    circuit_breakers:
      thresholds:
      - { max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 }
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: {{.UpHost}}, port_value: {{.UpPort}} }
`))

// Find returns the path of k's binary: from PATH, else from /usr/sbin or /usr/local/sbin
// (where the OS packages put haproxy and nginx, often outside a user's PATH).
func Find(k Kind) (string, error) {
	if p, err := exec.LookPath(string(k)); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, string(k))
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH, /usr/sbin or /usr/local/sbin; to include it: %s", k, k.InstallHint())
}

// Version returns the first line of k's version output, such as "HAProxy version 2.6.12".
func Version(ctx context.Context, k Kind, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var args []string
	switch k {
	case HAProxy:
		args = []string{"-v"}
	case Nginx:
		args = []string{"-v"}
	default:
		args = []string{"--version"}
	}
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			line = strings.TrimPrefix(line, "nginx version: ")
			if i := strings.Index(line, " - "); i > 0 {
				line = line[:i]
			}
			return line
		}
	}
	return "unknown"
}

// Command returns the command that runs the hop's proxy in the foreground with the
// configuration at h.ConfigFile().
func Command(h Hop, bin string) *exec.Cmd {
	switch h.Kind {
	case HAProxy:
		return exec.Command(bin, "-db", "-f", h.ConfigFile())
	case Nginx:
		return exec.Command(bin, "-p", h.Dir, "-e", filepath.Join(h.Dir, "nginx-"+h.Name+"-error.log"), "-c", h.ConfigFile())
	default:
		return exec.Command(bin, "-c", h.ConfigFile(), "--concurrency", "1", "--log-level", "warn", "--disable-hot-restart")
	}
}

// Start writes h's configuration and starts the proxy, waiting until it listens. The
// returned process leads its own process group; stop it with Stop.
func Start(ctx context.Context, h Hop, bin string) (*proc.Process, error) {
	cfg, err := Config(h)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(h.ConfigFile(), cfg, 0o644); err != nil {
		return nil, err
	}
	p, err := proc.Start(fmt.Sprintf("%s %s", h.Kind, h.Name), Command(h, bin))
	if err != nil {
		return nil, err
	}
	if err := proc.WaitListening(ctx, p, h.Listen, 10*time.Second); err != nil {
		_ = p.Stop(time.Second)
		if h.Kind == Nginx {
			if b, rerr := os.ReadFile(filepath.Join(h.Dir, "nginx-"+h.Name+"-error.log")); rerr == nil {
				err = fmt.Errorf("%w; error.log: %s", err, b)
			}
		}
		return nil, err
	}
	return p, nil
}
