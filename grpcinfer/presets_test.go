package grpcinfer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	pb "github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// compressionSeen records the grpc-encoding of incoming messages, as a stats handler sees it.
type compressionSeen struct {
	mu   sync.Mutex
	seen []string
}

func (c *compressionSeen) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (c *compressionSeen) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		c.mu.Lock()
		c.seen = append(c.seen, h.Compression)
		c.mu.Unlock()
	}
}
func (c *compressionSeen) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *compressionSeen) HandleConn(context.Context, stats.ConnStats) {}
func (c *compressionSeen) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

// countingListener counts the bytes the server reads.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, read: l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func TestZstdExchange(t *testing.T) {
	t.Parallel()
	var serverSaw, clientSaw compressionSeen
	var read atomic.Int64
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := serveOn(t, countingListener{Listener: lis, read: &read}, &echoServer{unary: echo},
		serverOptions(t, grpcinfer.ServerConfig{}, grpc.StatsHandler(&serverSaw)))
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Compressor: grpcinfer.Zstd}, grpc.WithStatsHandler(&clientSaw))

	payload := bytes.Repeat([]byte("tensor "), 1<<17) // 896 KiB, compressible
	// No deadline of the test's own: compressing megabytes under the race detector on a
	// busy machine takes what it takes, and nothing here is about time.
	ctx := t.Context()
	for range 3 { // several calls: pooled encoders and decoders are reused
		resp, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{ModelName: "z", RawInputContents: [][]byte{payload}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(resp.RawOutputContents[0], payload) {
			t.Fatal("payload changed across the zstd exchange")
		}
	}
	for _, got := range [][]string{serverSaw.get(), clientSaw.get()} {
		if len(got) != 3 || got[0] != "zstd" || got[2] != "zstd" {
			t.Fatalf("grpc-encoding seen = %v, want zstd on every message both ways", got)
		}
	}
	if n := read.Load(); n > 3*int64(len(payload))/10 {
		t.Fatalf("server read %d bytes for 3 x %d payload bytes: not compressed on the wire", n, len(payload))
	}

	// gzip is registered too.
	cc2 := dial(t, srv.Addr, grpcinfer.ClientConfig{Compressor: grpcinfer.Gzip})
	if _, err := invokeEcho(ctx, cc2, &pb.ModelInferRequest{RawInputContents: [][]byte{payload}}); err != nil {
		t.Fatal(err)
	}
	if got := serverSaw.get(); got[len(got)-1] != "gzip" {
		t.Fatalf("gzip call seen as %q", got[len(got)-1])
	}
}

func TestZstdDecompressedSizeIsCapped(t *testing.T) {
	t.Parallel()
	var ran atomic.Int64
	srv := startServer(t, &echoServer{unary: func(ctx context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
		ran.Add(1)
		return echo(ctx, r)
	}}, serverOptions(t, grpcinfer.ServerConfig{MaxRecvMsgSize: 1 << 20}))
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Compressor: grpcinfer.Zstd})
	// 16 MiB of zeros compress to a few KiB, far under any wire limit; decompressed, they are
	// 16 times the server's limit.
	_, err := invokeEcho(t.Context(), cc, &pb.ModelInferRequest{RawInputContents: [][]byte{make([]byte, 16<<20)}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "larger than max") {
		t.Fatalf("err = %v, want RESOURCE_EXHAUSTED for the decompressed size", err)
	}
	if ran.Load() != 0 {
		t.Fatal("handler ran for an oversized message")
	}
}

func TestZstdCompressorDirect(t *testing.T) {
	t.Parallel()
	c := encoding.GetCompressor("zstd")
	if c == nil || c.Name() != "zstd" {
		t.Fatal("zstd compressor not registered")
	}
	for i := range 4 {
		msg := bytes.Repeat([]byte{byte(i), 1, 2, 3}, 10000*(i+1))
		got, r := zstdRoundTrip(t, c, msg)
		if !bytes.Equal(got, msg) {
			t.Fatalf("round %d: %d bytes back of %d", i, len(got), len(msg))
		}
		if _, err := r.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read after close = %v, want EOF", err)
		}
	}
	// Garbage fails cleanly.
	r, err := c.Decompress(strings.NewReader("definitely not zstd"))
	if err == nil {
		_, err = io.ReadAll(r)
	}
	if err == nil {
		t.Fatal("garbage decompressed without error")
	}
}

// identity is an Open Inference Protocol model that returns its input.
type identity struct{}

func (identity) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{Name: "identity",
		Inputs:  []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1}}},
		Outputs: []oip.TensorMetadata{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1}}}}
}

func (identity) Infer(_ context.Context, r *oip.InferRequest) (*oip.InferResponse, error) {
	y := r.Inputs[0]
	y.Name = "y"
	return &oip.InferResponse{Outputs: []oip.Tensor{y}}, nil
}

func Test32MiBTensorRoundTrip(t *testing.T) {
	t.Parallel()
	model, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{identity{}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, nil, serverOptions(t, grpcinfer.ServerConfig{}), func(gs *grpc.Server) { model.Register(gs) })
	cc := dial(t, srv.Addr, grpcinfer.ClientConfig{})
	const n = 32 << 20 / 4 // 32 MiB of FP32
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i) * 0.5
	}
	resp, err := oip.NewClient(cc).Infer(t.Context(), &oip.InferRequest{
		ModelName: "identity", Raw: true, Inputs: []oip.Tensor{oip.NewTensor("x", []int64{n}, x)},
	})
	if err != nil {
		t.Fatal(err)
	}
	y, err := oip.Output[float32](resp, "y")
	if err != nil || len(y) != n {
		t.Fatalf("y: %d elements, %v", len(y), err)
	}
	for i := range y {
		if y[i] != x[i] {
			t.Fatalf("element %d = %v, want %v", i, y[i], x[i])
		}
	}
}

func TestClientConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  grpcinfer.ClientConfig
		want string
	}{
		{grpcinfer.ClientConfig{Compressor: "brotli"}, `Compressor "brotli"`},
		{grpcinfer.ClientConfig{ServiceConfig: "{"}, "ServiceConfig"},
		{grpcinfer.ClientConfig{MaxSendMsgSize: -1}, "MaxSendMsgSize -1"},
		{grpcinfer.ClientConfig{Keepalive: grpcinfer.Keepalive{Time: 12 * time.Second}}, "Keepalive.Time 12s is below Keepalive.MinTime 15s"},
		{grpcinfer.ClientConfig{Methods: map[string]grpcinfer.MethodPolicy{"pkg.S/M": {}}}, `key "pkg.S/M"`},
		{grpcinfer.ClientConfig{Methods: map[string]grpcinfer.MethodPolicy{"/pkg.S/M": {MaxAttempts: -2}}}, "MaxAttempts -2"},
		{grpcinfer.ClientConfig{Default: grpcinfer.MethodPolicy{IdleTimeout: -5}}, "Default.IdleTimeout"},
		// Time limits of the breaker Policy cannot be honoured: they belong in MethodPolicy.
		{grpcinfer.ClientConfig{Policy: breaker.Config{Timeout: 30 * time.Second}}, "ClientConfig.Policy.Timeout 30s cannot be honoured: gRPC time limits are set per method, in MethodPolicy.Timeout"},
		{grpcinfer.ClientConfig{Policy: breaker.Config{PerTryTimeout: breaker.NoTimeout}}, "ClientConfig.Policy.PerTryTimeout -1ns cannot be honoured"},
		{grpcinfer.ClientConfig{Policy: breaker.Config{WindowSize: -1}}, "ClientConfig.Policy: breaker: WindowSize -1"},
		// NoPolicy means no breaker and no retries; asking for either too is contradictory.
		{grpcinfer.ClientConfig{NoPolicy: true, Policy: breaker.Config{MaxAttempts: 3}}, "ClientConfig.Policy is set, but ClientConfig.NoPolicy switches it off"},
		{grpcinfer.ClientConfig{NoPolicy: true, Methods: map[string]grpcinfer.MethodPolicy{"/pkg.S/": {MaxAttempts: 2}}}, `Methods["/pkg.S/"].MaxAttempts 2 asks for retries`},
		// One retry layer: gRPC may not retry under the interceptors' Policy.
		{grpcinfer.ClientConfig{ServiceConfig: `{"methodConfig":[{"name":[{}],"timeout":"1s"},{"name":[{}],"retryPolicy":{"maxAttempts":2}}]}`}, "methodConfig[1] has a retryPolicy"},
		{grpcinfer.ClientConfig{ServiceConfig: `{"methodConfig":[{"name":[{}],"hedgingPolicy":{"maxAttempts":2}}]}`}, "methodConfig[0] has a hedgingPolicy"},
		{grpcinfer.ClientConfig{ServiceConfig: `{"methodConfig":{}}`}, "methodConfig is not a list"},
	} {
		if _, err := grpcinfer.DialOptions(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DialOptions: err = %v, want %q", err, tc.want)
		}
	}
	// Client pings off, or exactly at the server's minimum: both fine.
	for _, ka := range []grpcinfer.Keepalive{{Time: -1}, {Time: 15 * time.Second}} {
		if _, err := grpcinfer.DialOptions(grpcinfer.ClientConfig{Keepalive: ka}); err != nil {
			t.Errorf("Keepalive %+v: %v", ka, err)
		}
	}
	for _, cfg := range []grpcinfer.ClientConfig{
		{ServiceConfig: `{"methodConfig":[{"name":[{}],"timeout":"1s"}]}`}, // no retries: fine with the Policy
		{NoPolicy: true, ServiceConfig: `{"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":2,"initialBackoff":"0.1s","maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}`},
		{NoPolicy: true, Default: grpcinfer.MethodPolicy{MaxAttempts: 1, Timeout: time.Second}},
	} {
		if _, err := grpcinfer.DialOptions(cfg); err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

// h2Client is a bare HTTP/2 client on a raw connection: it pings on a schedule and records
// what the server sends back, so the keepalive test controls the ping interval exactly.
type h2Client struct {
	conn   net.Conn
	fr     *http2.Framer
	wmu    sync.Mutex
	acks   atomic.Int64
	goaway atomic.Pointer[http2.GoAwayFrame]
	debug  atomic.Value // string
	done   chan struct{}
}

func newH2Client(t *testing.T, addr string) *h2Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &h2Client{conn: conn, fr: http2.NewFramer(conn, conn), done: make(chan struct{})}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	c.write(func() error { return c.fr.WriteSettings() })
	go c.readLoop()
	t.Cleanup(func() { conn.Close(); <-c.done })
	return c
}

func (c *h2Client) write(f func() error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = f()
}

func (c *h2Client) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if f.IsAck() {
				c.acks.Add(1)
			} else {
				data := f.Data
				c.write(func() error { return c.fr.WritePing(true, data) })
			}
		case *http2.GoAwayFrame:
			c.debug.Store(string(f.DebugData()))
			c.goaway.Store(f)
		}
	}
}

// pingEvery sends n pings at the interval and waits for their acks (bounded).
func (c *h2Client) pingEvery(interval time.Duration, n int) {
	for i := range n {
		var data [8]byte
		binary.BigEndian.PutUint64(data[:], uint64(i+1))
		c.write(func() error { return c.fr.WritePing(false, data) })
		if c.goaway.Load() != nil {
			return
		}
		time.Sleep(interval)
	}
}

func TestKeepaliveNeverTripsTooManyPings(t *testing.T) {
	t.Parallel()
	// Shortened intervals, in the same proportions as the defaults' guarantee: the client
	// pings no more often than the server's minimum.
	ka := grpcinfer.Keepalive{Time: 150 * time.Millisecond, MinTime: 100 * time.Millisecond, Timeout: time.Second, ServerTime: time.Second}
	srv := startServer(t, &echoServer{unary: echo}, serverOptions(t, grpcinfer.ServerConfig{Keepalive: ka}))

	t.Run("client at Keepalive.Time", func(t *testing.T) {
		t.Parallel()
		c := newH2Client(t, srv.Addr)
		c.pingEvery(ka.Time, 12) // 12 pings, far beyond the 2 strikes a server tolerates
		time.Sleep(100 * time.Millisecond)
		if g := c.goaway.Load(); g != nil {
			t.Fatalf("GOAWAY %v %q after pinging at the preset interval", g.ErrCode, c.debug.Load())
		}
		if n := c.acks.Load(); n < 10 {
			t.Fatalf("only %d of 12 pings acknowledged", n)
		}
	})
	t.Run("client faster than MinTime is cut off", func(t *testing.T) {
		// The negative control: what a client outside the preset earns.
		t.Parallel()
		c := newH2Client(t, srv.Addr)
		c.pingEvery(ka.MinTime/4, 12)
		deadline := time.Now().Add(2 * time.Second)
		for c.goaway.Load() == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		g := c.goaway.Load()
		if g == nil || g.ErrCode != http2.ErrCodeEnhanceYourCalm || c.debug.Load() != "too_many_pings" {
			t.Fatalf("GOAWAY = %v, debug %v; want ENHANCE_YOUR_CALM too_many_pings", g, c.debug.Load())
		}
	})
	t.Run("grpc-go client and server of the presets", func(t *testing.T) {
		t.Parallel()
		// grpc-go raises a client interval below 10s to 10s, so here the server pings the
		// client every second and the client's keepalive is on; an idle stream must survive
		// with no GOAWAY and the connection must never leave READY.
		sniff := &frameSniffer{}
		cc := dial(t, srv.Addr, grpcinfer.ClientConfig{Keepalive: ka}, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return &sniffConn{Conn: conn, s: sniff}, nil
		}))
		ctx := longCtx(t, 20*time.Second)
		if _, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{}); err != nil {
			t.Fatal(err)
		}
		changed := make(chan struct{})
		go func() {
			defer close(changed)
			wctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
			defer cancel()
			cc.WaitForStateChange(wctx, connectivity.Ready)
		}()
		<-changed
		if st := cc.GetState(); st != connectivity.Ready {
			pings, goaways := sniff.counts()
			t.Fatalf("connection left READY: %v (server pings %d, GOAWAY frames %d)", st, pings, goaways)
		}
		if _, err := invokeEcho(ctx, cc, &pb.ModelInferRequest{}); err != nil {
			t.Fatalf("call after the idle period: %v", err)
		}
		pings, goaways := sniff.counts()
		if goaways != 0 {
			t.Fatalf("client received %d GOAWAY frames", goaways)
		}
		if pings < 2 {
			t.Fatalf("server sent %d keepalive pings in 2.5s, want at least 2", pings)
		}
	})
}

// frameSniffer parses the HTTP/2 frames a client receives, counting PING and GOAWAY frames.
type frameSniffer struct {
	mu      sync.Mutex
	buf     []byte
	pings   int
	goaways int
}

func (s *frameSniffer) feed(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	for len(s.buf) >= 9 {
		n := int(s.buf[0])<<16 | int(s.buf[1])<<8 | int(s.buf[2])
		if len(s.buf) < 9+n {
			return
		}
		switch http2.FrameType(s.buf[3]) {
		case http2.FramePing:
			if s.buf[4]&byte(http2.FlagPingAck) == 0 {
				s.pings++
			}
		case http2.FrameGoAway:
			s.goaways++
		}
		s.buf = s.buf[9+n:]
	}
}

func (s *frameSniffer) counts() (pings, goaways int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings, s.goaways
}

type sniffConn struct {
	net.Conn
	s *frameSniffer
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.s.feed(p[:n])
	return n, err
}

func TestPresetDefaults(t *testing.T) {
	t.Parallel()
	if grpcinfer.DefaultKeepaliveTime < grpcinfer.DefaultKeepaliveMinTime || grpcinfer.DefaultMaxMsgSize != 64<<20 || math.MaxInt32 < grpcinfer.DefaultMaxMsgSize {
		t.Fatal("preset defaults changed")
	}
}
