package grpcinfer

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// DefaultMaxMsgSize is the default receive and send limit of both presets: 64 MiB, room for
// tensors that grpc-go's own 4 MiB default refuses.
const DefaultMaxMsgSize = 64 << 20

// Keepalive defaults. A client of the presets pings an idle connection every 30 s; a server
// of the presets accepts pings as often as every 15 s, so the client stays a factor of two
// inside the server's policy and never earns a GOAWAY "too_many_pings".
const (
	DefaultKeepaliveTime       = 30 * time.Second
	DefaultKeepaliveTimeout    = 10 * time.Second
	DefaultKeepaliveMinTime    = 15 * time.Second
	DefaultKeepaliveServerTime = 60 * time.Second
)

// Keepalive configures HTTP/2 keepalive pings for both presets. Give the same value to
// [ClientConfig] and [ServerConfig]: both validate that the client's Time is not below the
// server's MinTime, which is what keeps a client of the presets from ever being cut off with
// GOAWAY "too_many_pings" by a server of the presets.
//
// The zero value gives the documented defaults. A client that talks to servers not built
// from [ServerOptions] must stay above their policy instead: grpc-go servers enforce 5
// minutes unless configured otherwise, and so does gRPC C++ (Triton) for pings without data.
type Keepalive struct {
	// Time is how long a client connection may go without receiving anything before the
	// client pings the server. Default 30s. Negative turns client pings off. grpc-go raises
	// any value below 10s to 10s, which only makes pings rarer.
	Time time.Duration
	// Timeout is how long either side waits for a ping's acknowledgement before closing the
	// connection. Default 10s.
	Timeout time.Duration
	// MinTime is the server's policy: a client that pings more often than this, three times,
	// is sent GOAWAY "too_many_pings" and disconnected. Pings are allowed with no call in
	// flight. Default 15s. Must not exceed Time (when client pings are on).
	MinTime time.Duration
	// ServerTime is how long a server connection may go without receiving anything before
	// the server pings the client (which no client policy limits). Default 60s; grpc-go
	// raises values below 1s to 1s. Negative turns server pings off.
	ServerTime time.Duration
	// MaxConnectionIdle, MaxConnectionAge and MaxConnectionAgeGrace are the server's
	// connection lifetimes (see keepalive.ServerParameters). Zero means unlimited, the
	// default. A MaxConnectionAge of a few minutes lets clients behind an L4 balancer
	// spread to new server replicas.
	MaxConnectionIdle, MaxConnectionAge, MaxConnectionAgeGrace time.Duration
}

// withDefaults fills zero fields and validates.
func (k Keepalive) withDefaults() (Keepalive, error) {
	if k.Time == 0 {
		k.Time = DefaultKeepaliveTime
	}
	if k.Timeout == 0 {
		k.Timeout = DefaultKeepaliveTimeout
	}
	if k.MinTime == 0 {
		k.MinTime = DefaultKeepaliveMinTime
	}
	if k.ServerTime == 0 {
		k.ServerTime = DefaultKeepaliveServerTime
	}
	switch {
	case k.Timeout < 0:
		return k, fmt.Errorf("grpcinfer: Keepalive.Timeout %v is negative", k.Timeout)
	case k.MinTime < 0:
		return k, fmt.Errorf("grpcinfer: Keepalive.MinTime %v is negative", k.MinTime)
	case k.MaxConnectionIdle < 0 || k.MaxConnectionAge < 0 || k.MaxConnectionAgeGrace < 0:
		return k, fmt.Errorf("grpcinfer: Keepalive connection lifetimes must not be negative (idle %v, age %v, grace %v)",
			k.MaxConnectionIdle, k.MaxConnectionAge, k.MaxConnectionAgeGrace)
	case k.Time > 0 && k.Time < k.MinTime:
		return k, fmt.Errorf("grpcinfer: Keepalive.Time %v is below Keepalive.MinTime %v: a server of these presets would answer the pings with GOAWAY too_many_pings", k.Time, k.MinTime)
	}
	return k, nil
}

func (k Keepalive) clientParams() (keepalive.ClientParameters, bool) {
	if k.Time < 0 {
		return keepalive.ClientParameters{}, false
	}
	return keepalive.ClientParameters{Time: k.Time, Timeout: k.Timeout, PermitWithoutStream: true}, true
}

func (k Keepalive) serverParams() keepalive.ServerParameters {
	p := keepalive.ServerParameters{
		MaxConnectionIdle:     k.MaxConnectionIdle,
		MaxConnectionAge:      k.MaxConnectionAge,
		MaxConnectionAgeGrace: k.MaxConnectionAgeGrace,
		Time:                  k.ServerTime,
		Timeout:               k.Timeout,
	}
	if k.ServerTime < 0 {
		p.Time = time.Duration(math.MaxInt64) // grpc-go's "infinity": no server pings
	}
	return p
}

func (k Keepalive) enforcement() keepalive.EnforcementPolicy {
	return keepalive.EnforcementPolicy{MinTime: k.MinTime, PermitWithoutStream: true}
}

func msgSize(field string, v int) (int, error) {
	switch {
	case v == 0:
		return DefaultMaxMsgSize, nil
	case v < 0:
		return 0, fmt.Errorf("grpcinfer: %s %d is negative", field, v)
	}
	return v, nil
}

// ServerOptions returns the server preset: keepalive parameters and enforcement policy,
// receive and send limits, and the server interceptors of [ServerInterceptors] (panic
// recovery, load shedding, minimum remaining deadline, usage trailers) chained in that order,
// the first outermost. The zstd and gzip compressors need no option: importing this package
// registers them. It returns an error naming the first invalid field of cfg.
func ServerOptions(cfg ServerConfig) ([]grpc.ServerOption, error) {
	ka, err := cfg.Keepalive.withDefaults()
	if err != nil {
		return nil, err
	}
	recv, err := msgSize("ServerConfig.MaxRecvMsgSize", cfg.MaxRecvMsgSize)
	if err != nil {
		return nil, err
	}
	send, err := msgSize("ServerConfig.MaxSendMsgSize", cfg.MaxSendMsgSize)
	if err != nil {
		return nil, err
	}
	unary, stream, err := ServerInterceptors(cfg)
	if err != nil {
		return nil, err
	}
	return []grpc.ServerOption{
		grpc.KeepaliveParams(ka.serverParams()),
		grpc.KeepaliveEnforcementPolicy(ka.enforcement()),
		grpc.MaxRecvMsgSize(recv),
		grpc.MaxSendMsgSize(send),
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(stream),
	}, nil
}

// NewServer returns a gRPC server built with [ServerOptions] (cfg's preset) followed by
// extra, with gRPC server reflection registered unless cfg.DisableReflection is set. Register
// your services (and [NewHealthGate]) on it before Serve; reflection lists whatever is
// registered when it is asked. It returns an error naming the first invalid field of cfg.
func NewServer(cfg ServerConfig, extra ...grpc.ServerOption) (*grpc.Server, error) {
	opts, err := ServerOptions(cfg)
	if err != nil {
		return nil, err
	}
	s := grpc.NewServer(append(opts, extra...)...)
	if !cfg.DisableReflection {
		reflection.Register(s)
	}
	return s, nil
}

// checkServiceConfig validates a service config as a JSON object (gRPC validates the rest
// when the connection starts) and, while the interceptors retry, refuses a retry or hedging
// policy in it: gRPC would repeat each of their attempts.
func checkServiceConfig(sc string, interceptorsRetry bool) error {
	if sc == "" {
		return nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(sc), &top); err != nil {
		return fmt.Errorf("grpcinfer: ClientConfig.ServiceConfig is not a JSON object: %w", err)
	}
	if !interceptorsRetry {
		return nil
	}
	for key, raw := range top {
		// gRPC reads the config with encoding/json, which matches keys case-insensitively.
		if strings.EqualFold(key, "methodConfig") {
			if err := refuseRetries(raw); err != nil {
				return err
			}
		}
	}
	return nil
}

// refuseRetries returns an error naming the first entry of a service config's methodConfig
// list that asks gRPC to retry or hedge.
func refuseRetries(methodConfig json.RawMessage) error {
	var methods []map[string]json.RawMessage
	if err := json.Unmarshal(methodConfig, &methods); err != nil {
		return fmt.Errorf("grpcinfer: ClientConfig.ServiceConfig methodConfig is not a list of objects: %w", err)
	}
	for i, mc := range methods {
		for k, v := range mc {
			if (strings.EqualFold(k, "retryPolicy") || strings.EqualFold(k, "hedgingPolicy")) && string(v) != "null" {
				return fmt.Errorf("grpcinfer: ClientConfig.ServiceConfig methodConfig[%d] has a %s, but the client interceptors' Policy already retries and gRPC would repeat each of its attempts: remove it, or set ClientConfig.NoPolicy to let gRPC retry instead", i, k)
			}
		}
	}
	return nil
}

func checkCompressor(name string) error {
	if name == "" || name == "identity" {
		return nil
	}
	if encoding.GetCompressor(name) == nil {
		return fmt.Errorf("grpcinfer: ClientConfig.Compressor %q is not a registered gRPC compressor (use %q or %q)", name, Zstd, Gzip)
	}
	return nil
}
