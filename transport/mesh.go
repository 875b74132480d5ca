package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// MeshKind is the kind of service mesh a process runs in.
type MeshKind int

const (
	// MeshNone (the zero value): no mesh detected.
	MeshNone MeshKind = iota
	// MeshIstioSidecar: an Istio (Envoy) sidecar intercepts the pod's traffic.
	MeshIstioSidecar
	// MeshAmbient: Istio ambient mode; ztunnel carries the pod's traffic, no sidecar.
	MeshAmbient
	// MeshProxylessGRPC: gRPC talks xDS itself (GRPC_XDS_BOOTSTRAP); HTTP is not intercepted.
	MeshProxylessGRPC
)

// String returns "none", "istio-sidecar", "ambient" or "proxyless-grpc".
func (k MeshKind) String() string {
	switch k {
	case MeshNone:
		return "none"
	case MeshIstioSidecar:
		return "istio-sidecar"
	case MeshAmbient:
		return "ambient"
	case MeshProxylessGRPC:
		return "proxyless-grpc"
	}
	return fmt.Sprintf("MeshKind(%d)", int(k))
}

// Defaults used by [DetectMesh], [WaitForSidecar] and [QuitSidecar].
const (
	// DefaultReadinessAddr is where Istio's pilot-agent answers readiness probes.
	DefaultReadinessAddr = "127.0.0.1:15021"
	// DefaultReadinessPath is pilot-agent's readiness path; 200 means Envoy is ready.
	DefaultReadinessPath = "/healthz/ready"
	// DefaultAdminAddr is pilot-agent's status port, which takes POST /quitquitquit from
	// localhost.
	DefaultAdminAddr = "127.0.0.1:15020"
	// DefaultAnnotationsPath is the conventional mount of the downward-API file holding the
	// pod's annotations.
	DefaultAnnotationsPath = "/etc/podinfo/annotations"
	// DefaultProbeTimeout bounds one readiness probe.
	DefaultProbeTimeout = time.Second
)

// Annotation keys and environment variables [DetectMesh] looks at.
const (
	annotationSidecarStatus = "sidecar.istio.io/status"
	annotationAmbient       = "ambient.istio.io/redirection"
	envXDSBootstrap         = "GRPC_XDS_BOOTSTRAP"
	maxAnnotationsFile      = 1 << 20 // Kubernetes caps all annotations at 256 KiB
)

// DetectConfig configures [DetectMesh]. The zero value probes [DefaultReadinessAddr], reads
// [DefaultAnnotationsPath] when it exists and looks up the process environment.
type DetectConfig struct {
	// ReadinessAddr is the host:port of the sidecar's readiness endpoint. Empty means
	// [DefaultReadinessAddr].
	ReadinessAddr string

	// ReadinessPath is the readiness path. Empty means [DefaultReadinessPath].
	ReadinessPath string

	// DisableProbe skips the readiness probe; only the annotations and the environment count.
	DisableProbe bool

	// ProbeTimeout bounds the readiness probe. Zero means [DefaultProbeTimeout].
	ProbeTimeout time.Duration

	// AnnotationsPath is the downward-API annotations file. Empty means
	// [DefaultAnnotationsPath]. A missing file is not an error: it is simply not mounted.
	AnnotationsPath string

	// LookupEnv reads environment variables. Nil means [os.LookupEnv]. Tests pass their own
	// so that they need not change the process environment.
	LookupEnv func(key string) (string, bool)
}

// Mesh describes the mesh [DetectMesh] found.
type Mesh struct {
	// Kind is the kind of mesh.
	Kind MeshKind

	// SidecarReady reports that the readiness endpoint answered 200 during detection.
	SidecarReady bool

	// Revision is the Istio revision from the sidecar.istio.io/status annotation, if any.
	Revision string

	// XDSBootstrap is GRPC_XDS_BOOTSTRAP when set (the path of gRPC's xDS bootstrap file).
	XDSBootstrap string

	// Evidence says what the detection saw, for logs (never secrets): for example
	// "annotation sidecar.istio.io/status; readiness 127.0.0.1:15021 answered 200".
	Evidence string
}

// Preset returns the transport preset that fits m: [PresetSidecar] for an Istio sidecar,
// [PresetDirect] otherwise (ambient mode's ztunnel is transparent at L4, and proxyless gRPC
// leaves HTTP alone).
func (m Mesh) Preset() Preset {
	if m.Kind == MeshIstioSidecar {
		return PresetSidecar
	}
	return PresetDirect
}

// DetectMesh finds out whether the process runs in a mesh, and which kind:
//
//   - the annotations file (downward API) says ambient.istio.io/redirection="enabled":
//     [MeshAmbient];
//   - it has sidecar.istio.io/status: [MeshIstioSidecar], or [MeshProxylessGRPC] when the
//     injected template is Istio's "grpc-agent";
//   - GRPC_XDS_BOOTSTRAP is set (and no sidecar is annotated): [MeshProxylessGRPC];
//   - the readiness endpoint answers at all: [MeshIstioSidecar] (application containers get
//     no ISTIO_* environment, so the probe is the signal that needs no mount).
//
// For a sidecar the probe also fills SidecarReady. A missing annotations file or a refused
// probe just means "not this signal". DetectMesh returns an error for an invalid DetectConfig,
// an annotations file that exists but cannot be read, or when ctx ends first.
func DetectMesh(ctx context.Context, c DetectConfig) (Mesh, error) {
	addr := orString(c.ReadinessAddr, DefaultReadinessAddr)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return Mesh{}, fmt.Errorf("transport: invalid DetectConfig.ReadinessAddr %q: %v", addr, err)
	}
	path := orString(c.ReadinessPath, DefaultReadinessPath)
	if !strings.HasPrefix(path, "/") {
		return Mesh{}, fmt.Errorf("transport: invalid DetectConfig.ReadinessPath %q: must start with /", path)
	}
	if c.ProbeTimeout < 0 {
		return Mesh{}, fmt.Errorf("transport: invalid DetectConfig.ProbeTimeout %v: must not be negative", c.ProbeTimeout)
	}
	lookup := c.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}

	var m Mesh
	var evidence []string
	annPath := orString(c.AnnotationsPath, DefaultAnnotationsPath)
	ann, err := readAnnotations(annPath)
	if err != nil {
		return Mesh{}, err
	}
	if v, ok := lookup(envXDSBootstrap); ok && v != "" {
		m.XDSBootstrap = v
	}
	switch status, hasSidecar := ann[annotationSidecarStatus]; {
	case strings.EqualFold(ann[annotationAmbient], "enabled"):
		m.Kind = MeshAmbient
		evidence = append(evidence, "annotation "+annotationAmbient+"=enabled")
	case hasSidecar:
		s := parseSidecarStatus(status)
		m.Revision = s.Revision
		m.Kind = MeshIstioSidecar
		if slices.Contains(s.Templates, "grpc-agent") {
			m.Kind = MeshProxylessGRPC
		}
		evidence = append(evidence, "annotation "+annotationSidecarStatus)
	case m.XDSBootstrap != "":
		m.Kind = MeshProxylessGRPC
		evidence = append(evidence, envXDSBootstrap+" is set")
	}

	if !c.DisableProbe && (m.Kind == MeshNone || m.Kind == MeshIstioSidecar) {
		client, tr := newProbeClient(orDuration(c.ProbeTimeout, DefaultProbeTimeout))
		code, perr := probeReady(ctx, client, "http://"+addr+path)
		tr.CloseIdleConnections()
		if cerr := ctx.Err(); cerr != nil {
			return Mesh{}, cerr
		}
		if perr == nil {
			if m.Kind == MeshNone {
				m.Kind = MeshIstioSidecar
			}
			m.SidecarReady = code == http.StatusOK
			evidence = append(evidence, fmt.Sprintf("readiness %s answered %d", addr, code))
		}
	}
	m.Evidence = strings.Join(evidence, "; ")
	return m, nil
}

// sidecarStatus is the part of the sidecar.istio.io/status annotation (JSON) DetectMesh uses.
type sidecarStatus struct {
	Revision  string   `json:"revision"`
	Templates []string `json:"templates"`
}

func parseSidecarStatus(v string) sidecarStatus {
	var s sidecarStatus
	_ = json.Unmarshal([]byte(v), &s) // an unparsable status still means "injected"
	return s
}

func readAnnotations(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("transport: reading annotations file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAnnotationsFile))
	if err != nil {
		return nil, fmt.Errorf("transport: reading annotations file: %w", err)
	}
	return parseAnnotations(data), nil
}

// parseAnnotations parses the downward API's annotations file: one key="value" per line,
// with the value quoted and escaped as Go does. Lines that do not parse are skipped; an
// unquotable value is kept as written.
func parseAnnotations(data []byte) map[string]string {
	m := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxAnnotationsFile)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			continue
		}
		val = strings.TrimSpace(val)
		if u, err := strconv.Unquote(val); err == nil {
			val = u
		}
		m[key] = val
	}
	return m
}

// newProbeClient returns a client for loopback probes: no proxy from the environment, no
// redirects, no connection reuse, each request bounded by timeout.
func newProbeClient(timeout time.Duration) (*http.Client, *http.Transport) {
	tr := &http.Transport{
		DialContext:       (&net.Dialer{Timeout: timeout}).DialContext,
		DisableKeepAlives: true,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, tr
}

// probeReady GETs url and returns the status code, draining a little of the body.
func probeReady(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// WaitForSidecar polls the sidecar's readiness endpoint (http://addr/healthz/ready; an empty
// addr means [DefaultReadinessAddr]) until it answers 200 or ctx ends. Polls back off
// exponentially from 50 ms to 1 s with jitter. When ctx ends first, the error wraps ctx's error
// and says what the last probe saw: a status code or the dial error. Use it at startup, before
// the first call through an Istio sidecar that may not be ready yet.
func WaitForSidecar(ctx context.Context, addr string) error {
	addr = orString(addr, DefaultReadinessAddr)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("transport: invalid sidecar readiness address %q: %v", addr, err)
	}
	client, tr := newProbeClient(DefaultProbeTimeout)
	defer tr.CloseIdleConnections()
	url := "http://" + addr + DefaultReadinessPath
	return waitReady(ctx, addr, newWaitBackoff(), func(ctx context.Context) (int, error) {
		return probeReady(ctx, client, url)
	})
}

func newWaitBackoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(50*time.Millisecond),
		backoff.WithMaxInterval(time.Second),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.2),
		backoff.WithMaxElapsedTime(0), // until ctx ends
	)
	return b
}

// waitReady calls probe until it returns 200, sleeping b's intervals in between.
func waitReady(ctx context.Context, addr string, b backoff.BackOff, probe func(context.Context) (int, error)) error {
	last := "no probe completed"
	for {
		code, err := probe(ctx)
		switch {
		case err == nil && code == http.StatusOK:
			return nil
		case err == nil:
			last = fmt.Sprintf("HTTP %d", code)
		case ctx.Err() == nil:
			last = err.Error()
		}
		wait := b.NextBackOff()
		if wait == backoff.Stop {
			return fmt.Errorf("transport: sidecar at %s not ready; last probe: %s", addr, last)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("transport: sidecar at %s not ready: %w; last probe: %s", addr, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// QuitSidecar asks the sidecar's agent to exit by POSTing /quitquitquit to addr (empty means
// [DefaultAdminAddr]), so that a Job or CronJob pod can complete once its work is done. It
// returns an error when the agent cannot be reached or does not answer 2xx.
func QuitSidecar(ctx context.Context, addr string) error {
	addr = orString(addr, DefaultAdminAddr)
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("transport: invalid sidecar admin address %q: %v", addr, err)
	}
	client, tr := newProbeClient(DefaultProbeTimeout)
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/quitquitquit", nil)
	if err != nil {
		return fmt.Errorf("transport: quitting sidecar: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("transport: quitting sidecar at %s: %w", addr, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("transport: sidecar at %s answered /quitquitquit with HTTP %d", addr, resp.StatusCode)
	}
	return nil
}

func orString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
