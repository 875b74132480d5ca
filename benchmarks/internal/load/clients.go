package load

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the "gzip" compressor for the plain gRPC client

	"github.com/infermesh/infermesh/benchmarks/internal/payload"
	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/transport"
)

// Client is a kind of client.
type Client string

// The clients of the benchmark.
const (
	// Stdlib is net/http with the standard library's default transport settings (a clone
	// of http.DefaultTransport: 2 idle connections per host). For h2c it only switches the
	// protocol to unencrypted HTTP/2; gzip request bodies are compressed by hand.
	Stdlib Client = "stdlib"
	// Transport is infermesh's pooled transport preset (transport.New): PresetDirect
	// when calling the upstream directly, PresetSidecar through a proxy; compression through
	// transport.NewCompressor.
	Transport Client = "infermesh-transport"
	// LLMClient is infermesh's llmclient.NewHTTPClient: the transport preset plus the full
	// resilience stack (route policy with breaker, retries, time limits; response checks;
	// tracing through the global no-op provider).
	LLMClient Client = "infermesh-llmclient"
	// GRPCDefault is grpc-go with insecure credentials and nothing else.
	GRPCDefault Client = "grpc-default"
	// GRPCInfer is grpc-go with grpcinfer.DialOptions: keepalive, message sizes, service
	// config, and the client interceptors running every call through a breaker.Policy.
	GRPCInfer Client = "grpcinfer"
)

// IsGRPC reports whether c is a gRPC client.
func (c Client) IsGRPC() bool { return c == GRPCDefault || c == GRPCInfer }

// Compression is a request body coding.
type Compression string

// The codings.
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// caller makes one request; it returns an error for a failed call or a non-2xx status.
type caller interface {
	call(ctx context.Context) error
	close()
}

// Target says where a client sends its requests.
type Target struct {
	// Addr is the host:port the client connects to: the upstream or the first proxy.
	Addr string
	// ViaProxy selects the sidecar transport preset.
	ViaProxy bool
	// H2C speaks HTTP/2 without TLS (HTTP clients only; gRPC always does).
	H2C bool
}

// newCaller builds the client c for target t and payload p with coding comp. conns counts
// new connections the client opens.
func newCaller(c Client, t Target, p payload.Kind, comp Compression, conns *atomic.Int64) (caller, error) {
	if c.IsGRPC() {
		return newGRPCCaller(c, t, p, comp, conns)
	}
	hp, err := payload.ForHTTP(p)
	if err != nil {
		return nil, err
	}
	hc := &httpCaller{url: "http://" + t.Addr + hp.Path, p: hp}
	switch c {
	case Stdlib:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		countDials(tr, conns)
		if t.H2C {
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
		}
		switch comp {
		case None:
		case Gzip:
			hc.gzipByHand = true
		default:
			return nil, fmt.Errorf("client %s cannot send %s bodies", c, comp)
		}
		hc.client = &http.Client{Transport: tr}
	case Transport:
		tr, err := transport.New(tcfg(t))
		if err != nil {
			return nil, err
		}
		countDials(tr, conns)
		var rt http.RoundTripper = tr
		if comp != None {
			rt, err = transport.NewCompressor(tr, transport.CompressionConfig{Encoding: transport.Encoding(comp)})
			if err != nil {
				return nil, err
			}
		}
		hc.client = &http.Client{Transport: rt}
	case LLMClient:
		// Base is what llmclient builds from Config.Transport itself, with dials counted.
		tr, err := transport.New(tcfg(t))
		if err != nil {
			return nil, err
		}
		countDials(tr, conns)
		cfg := llmclient.Config{Base: tr}
		if comp != None {
			cfg.Compression = &transport.CompressionConfig{Encoding: transport.Encoding(comp)}
		}
		cl, err := llmclient.NewHTTPClient(cfg)
		if err != nil {
			return nil, err
		}
		hc.client = cl
	default:
		return nil, fmt.Errorf("unknown client %q", c)
	}
	return hc, nil
}

// countDials makes tr count the connections it dials into n.
func countDials(tr *http.Transport, n *atomic.Int64) {
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			n.Add(1)
		}
		return c, err
	}
}

func tcfg(t Target) transport.Config {
	cfg := transport.Config{H2C: t.H2C}
	if t.ViaProxy {
		cfg.Preset = transport.PresetSidecar
	}
	return cfg
}

type httpCaller struct {
	client     *http.Client
	url        string
	p          payload.HTTP
	gzipByHand bool
	gz         sync.Pool // *gzip.Writer
}

func (h *httpCaller) body() ([]byte, error) {
	if !h.gzipByHand {
		return h.p.Body, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(h.p.Body) / 2)
	w, _ := h.gz.Get().(*gzip.Writer)
	if w == nil {
		w, _ = gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	} else {
		w.Reset(&buf)
	}
	defer h.gz.Put(w)
	if _, err := w.Write(h.p.Body); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (h *httpCaller) call(ctx context.Context) error {
	b, err := h.body()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", h.p.ContentType)
	if h.gzipByHand {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func (h *httpCaller) close() { h.client.CloseIdleConnections() }

type grpcCaller struct {
	cc     *grpc.ClientConn
	client *oip.Client
	req    *oip.InferRequest
	want   int64
	opts   []grpc.CallOption
}

func newGRPCCaller(c Client, t Target, p payload.Kind, comp Compression, conns *atomic.Int64) (caller, error) {
	req, err := payload.Infer(p)
	if err != nil {
		return nil, err
	}
	var want int64
	for _, in := range req.Inputs {
		want += int64(in.Len())
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conns.Add(1)
		}
		return c, err
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
	}
	g := &grpcCaller{req: req, want: want}
	switch c {
	case GRPCDefault:
		switch comp {
		case None:
		case Gzip:
			g.opts = append(g.opts, grpc.UseCompressor("gzip"))
		default:
			return nil, fmt.Errorf("client %s cannot send %s messages", c, comp)
		}
	case GRPCInfer:
		cfg := grpcinfer.ClientConfig{Policy: breaker.Config{Name: "meshbench"}}
		if comp != None {
			cfg.Compressor = string(comp)
		}
		do, err := grpcinfer.DialOptions(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, do...)
	default:
		return nil, fmt.Errorf("unknown client %q", c)
	}
	cc, err := grpc.NewClient("passthrough:///"+t.Addr, opts...)
	if err != nil {
		return nil, err
	}
	g.cc, g.client = cc, oip.NewClient(cc)
	return g, nil
}

func (g *grpcCaller) call(ctx context.Context) error {
	resp, err := g.client.Infer(ctx, g.req, g.opts...)
	if err != nil {
		return err
	}
	n, err := oip.Output[int64](resp, "n")
	if err != nil {
		return err
	}
	if len(n) != 1 || n[0] != g.want {
		return fmt.Errorf("upstream counted %v elements, want %d", n, g.want)
	}
	return nil
}

func (g *grpcCaller) close() { _ = g.cc.Close() }
