package transport

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Preset selects the defaults [New] starts from.
type Preset int

const (
	// PresetDirect (the zero value) is for calls that leave the pod directly: to an LLM API on
	// the internet or to a service without a mesh. HTTP/1.1 and HTTP/2 (negotiated by ALPN over
	// TLS), proxy from the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), a 30 s dial timeout.
	PresetDirect Preset = iota

	// PresetSidecar is for calls that a local sidecar proxy (Envoy in Istio) intercepts: plain
	// pooled HTTP/1.1 only, because the sidecar originates mTLS and HTTP/2 upstream itself and
	// Go's HTTP/2 costs about twice the CPU per request of pooled HTTP/1.1 on a loopback hop. No
	// proxy from the environment (the sidecar captures traffic transparently) and a 5 s dial
	// timeout (the connect completes against the local sidecar, so a slow connect means the
	// sidecar is unwell, not the network). The pool keeps 64 idle connections per host and
	// closes them after 50 s idle, far below Envoy's 1 h downstream idle timeout, so the
	// client, never the sidecar, closes an idle connection. Set [Config.H2C] to speak h2c to
	// the sidecar instead.
	PresetSidecar
)

// String returns "direct" or "sidecar".
func (p Preset) String() string {
	switch p {
	case PresetDirect:
		return "direct"
	case PresetSidecar:
		return "sidecar"
	}
	return fmt.Sprintf("Preset(%d)", int(p))
}

// Defaults used by [New] when the matching [Config] field is zero.
const (
	// DefaultMaxIdleConnsPerHost keeps up to 64 idle connections per host, sized to the
	// concurrency an LLM client typically runs at. The standard library keeps 2, so that under
	// concurrent load most connections are closed after one request and redialled.
	DefaultMaxIdleConnsPerHost = 64

	// DefaultMaxIdleConns bounds idle connections across all hosts.
	DefaultMaxIdleConns = 1024

	// DefaultIdleConnTimeout closes a connection idle for 50 s. It must be below every idle
	// timeout on the path so that the client, never the proxy, closes an idle connection:
	// a proxy that closes a connection at the moment the client reuses it fails that request
	// (and Go replays only idempotent ones). Common proxy idle timeouts are 60 s (AWS ALB,
	// many HAProxy setups), 75 s (nginx keepalive_timeout) and 1 h (Envoy's HTTP connection
	// manager and Istio's connection pool); 50 s is below all of them.
	DefaultIdleConnTimeout = 50 * time.Second

	// DefaultDialTimeout is the connect timeout of [PresetDirect].
	DefaultDialTimeout = 30 * time.Second

	// DefaultSidecarDialTimeout is the connect timeout of [PresetSidecar].
	DefaultSidecarDialTimeout = 5 * time.Second

	// DefaultTLSHandshakeTimeout bounds the TLS handshake.
	DefaultTLSHandshakeTimeout = 10 * time.Second

	// DefaultHTTP2SendPingTimeout sends an HTTP/2 PING after 30 s without a frame from the peer,
	// so a connection silently dropped by a middlebox is found before a request hangs on it.
	DefaultHTTP2SendPingTimeout = 30 * time.Second

	// DefaultHTTP2PingTimeout closes an HTTP/2 connection whose PING is unanswered for 15 s.
	DefaultHTTP2PingTimeout = 15 * time.Second
)

// DefaultKeepAlive is the TCP keepalive used when [Config.KeepAlive] is nil: the first probe
// after 30 s idle, then every 10 s, and the connection is dropped after 3 unanswered probes, so
// a dead peer is noticed in about a minute instead of the kernel's default two hours. It is
// a function so that callers cannot change the package's defaults.
func DefaultKeepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}
}

// Config configures [New]. The zero value is valid and gives [PresetDirect] with the documented
// defaults; every zero field means "the preset's default". Negative values are errors.
type Config struct {
	// Preset selects the defaults. Zero is [PresetDirect].
	Preset Preset

	// MaxIdleConns bounds idle connections across all hosts. Zero means [DefaultMaxIdleConns].
	MaxIdleConns int

	// MaxIdleConnsPerHost bounds idle connections per host. Zero means
	// [DefaultMaxIdleConnsPerHost] (64). Size it to the concurrency you expect per host.
	MaxIdleConnsPerHost int

	// MaxConnsPerHost bounds connections per host, dialling, active and idle; requests beyond
	// it wait for a connection. Zero means no limit.
	MaxConnsPerHost int

	// IdleConnTimeout closes idle connections after this long. Zero means
	// [DefaultIdleConnTimeout] (50 s). Keep it below the idle timeout of any proxy on the path.
	IdleConnTimeout time.Duration

	// DialTimeout bounds the TCP connect. Zero means [DefaultDialTimeout] for [PresetDirect]
	// and [DefaultSidecarDialTimeout] for [PresetSidecar].
	DialTimeout time.Duration

	// KeepAlive configures TCP keepalive probes on every dialled connection. Nil means
	// [DefaultKeepAlive]; a config with Enable false turns probes off.
	KeepAlive *net.KeepAliveConfig

	// TLSHandshakeTimeout bounds the TLS handshake. Zero means [DefaultTLSHandshakeTimeout].
	TLSHandshakeTimeout time.Duration

	// TLSClientConfig is cloned, never modified. Nil means a config with MinVersion TLS 1.2.
	// A zero MinVersion is raised to TLS 1.2; a MinVersion (or a non-zero MaxVersion) below
	// TLS 1.2 is an error.
	TLSClientConfig *tls.Config

	// H2C speaks HTTP/2 without TLS (prior knowledge) to http:// URLs, for servers and sidecars
	// that accept h2c. https:// URLs then use HTTP/2 only (ALPN "h2"): the standard library
	// cannot offer h2c and HTTP/1.1 on the same transport. Off by default.
	H2C bool

	// HTTP2SendPingTimeout sends a health-check PING on an HTTP/2 connection that has received
	// no frame for this long. Zero means [DefaultHTTP2SendPingTimeout] (30 s). To turn health
	// checks off, set HTTP2.SendPingTimeout to zero on the returned transport.
	HTTP2SendPingTimeout time.Duration

	// HTTP2PingTimeout closes an HTTP/2 connection whose health-check PING is unanswered for
	// this long. Zero means [DefaultHTTP2PingTimeout] (15 s).
	HTTP2PingTimeout time.Duration
}

// New returns a new, unshared [http.Transport] configured from c. Each call returns a fresh
// transport that the caller may adjust further before first use; [http.DefaultTransport] is
// never read or changed. An invalid Config returns an error naming the field and its value.
func New(c Config) (*http.Transport, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	tlsConf, err := tlsConfig(c.TLSClientConfig)
	if err != nil {
		return nil, err
	}

	dialTimeout := orDuration(c.DialTimeout, DefaultDialTimeout)
	if c.Preset == PresetSidecar {
		dialTimeout = orDuration(c.DialTimeout, DefaultSidecarDialTimeout)
	}
	ka := DefaultKeepAlive()
	if c.KeepAlive != nil {
		ka = *c.KeepAlive
	}
	dialer := &net.Dialer{
		Timeout:         dialTimeout,
		KeepAliveConfig: ka,
	}
	if !ka.Enable {
		dialer.KeepAlive = -1 // a zero KeepAlive with a disabled config would still enable probes
	}

	var protocols http.Protocols
	switch {
	case c.H2C:
		// HTTP1 must be absent for the transport to use h2c with prior knowledge.
		protocols.SetUnencryptedHTTP2(true)
		protocols.SetHTTP2(true)
	case c.Preset == PresetSidecar:
		protocols.SetHTTP1(true)
	default:
		protocols.SetHTTP1(true)
		protocols.SetHTTP2(true)
	}

	t := &http.Transport{
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   orDuration(c.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout),
		MaxIdleConns:          orInt(c.MaxIdleConns, DefaultMaxIdleConns),
		MaxIdleConnsPerHost:   orInt(c.MaxIdleConnsPerHost, DefaultMaxIdleConnsPerHost),
		MaxConnsPerHost:       c.MaxConnsPerHost,
		IdleConnTimeout:       orDuration(c.IdleConnTimeout, DefaultIdleConnTimeout),
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     protocols.HTTP2(),
		Protocols:             &protocols,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: orDuration(c.HTTP2SendPingTimeout, DefaultHTTP2SendPingTimeout),
			PingTimeout:     orDuration(c.HTTP2PingTimeout, DefaultHTTP2PingTimeout),
		},
	}
	if c.Preset == PresetDirect {
		t.Proxy = http.ProxyFromEnvironment
	}
	return t, nil
}

func (c *Config) validate() error {
	if c.Preset != PresetDirect && c.Preset != PresetSidecar {
		return fieldError("Preset", c.Preset, "unknown preset")
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxIdleConns", c.MaxIdleConns},
		{"MaxIdleConnsPerHost", c.MaxIdleConnsPerHost},
		{"MaxConnsPerHost", c.MaxConnsPerHost},
	} {
		if f.v < 0 {
			return fieldError(f.name, f.v, "must not be negative")
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"IdleConnTimeout", c.IdleConnTimeout},
		{"DialTimeout", c.DialTimeout},
		{"TLSHandshakeTimeout", c.TLSHandshakeTimeout},
		{"HTTP2SendPingTimeout", c.HTTP2SendPingTimeout},
		{"HTTP2PingTimeout", c.HTTP2PingTimeout},
	} {
		if f.v < 0 {
			return fieldError(f.name, f.v, "must not be negative")
		}
	}
	if c.MaxConnsPerHost > 0 && c.MaxIdleConnsPerHost > c.MaxConnsPerHost {
		return fieldError("MaxIdleConnsPerHost", c.MaxIdleConnsPerHost,
			fmt.Sprintf("must not exceed MaxConnsPerHost (%d)", c.MaxConnsPerHost))
	}
	return nil
}

// tlsConfig clones user (or starts from an empty config) and enforces TLS 1.2 as the minimum.
func tlsConfig(user *tls.Config) (*tls.Config, error) {
	if user == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	if user.MinVersion != 0 && user.MinVersion < tls.VersionTLS12 {
		return nil, fieldError("TLSClientConfig.MinVersion", tls.VersionName(user.MinVersion), "is below TLS 1.2")
	}
	if user.MaxVersion != 0 && user.MaxVersion < tls.VersionTLS12 {
		return nil, fieldError("TLSClientConfig.MaxVersion", tls.VersionName(user.MaxVersion), "is below TLS 1.2")
	}
	conf := user.Clone()
	if conf.MinVersion == 0 {
		conf.MinVersion = tls.VersionTLS12
	}
	return conf, nil
}

// fieldError reports an invalid Config field by name and value.
func fieldError(field string, value any, why string) error {
	return fmt.Errorf("transport: invalid Config.%s %v: %s", field, value, why)
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orDuration(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}
