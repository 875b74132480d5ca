package upstream

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/infermesh/infermesh/benchmarks/internal/payload"
	"github.com/infermesh/infermesh/benchmarks/internal/proc"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/transport"
)

// MaxBodyBytes caps a decoded request body.
const MaxBodyBytes = 64 << 20

// Stats are the upstream's counters since it started.
type Stats struct {
	// HTTPConns and GRPCConns are the connections accepted on each port.
	HTTPConns int64 `json:"http_conns"`
	GRPCConns int64 `json:"grpc_conns"`
	// HTTPRequests and GRPCRequests are the requests served.
	HTTPRequests int64 `json:"http_requests"`
	GRPCRequests int64 `json:"grpc_requests"`
	// BadRequests counts requests answered with an error status.
	BadRequests int64 `json:"bad_requests"`
}

type counters struct {
	httpConns, grpcConns, httpReqs, grpcReqs, bad atomic.Int64
}

func (c *counters) stats() Stats {
	return Stats{
		HTTPConns: c.httpConns.Load(), GRPCConns: c.grpcConns.Load(),
		HTTPRequests: c.httpReqs.Load(), GRPCRequests: c.grpcReqs.Load(), BadRequests: c.bad.Load(),
	}
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// chatReply is what /v1/chat/completions answers: a small, fixed completion.
const chatReply = `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"hello hello hello hello hello"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":200,"completion_tokens":5,"total_tokens":205}}`

// handler returns the upstream's HTTP handler, counting into c.
func handler(c *counters) http.Handler {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.httpReqs.Add(1)
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/chat/completions" {
			_, _ = io.WriteString(w, chatReply)
			return
		}
		fmt.Fprintf(w, `{"ok":true,"bytes":%d}`, n)
	})
	dec := transport.DecompressHandler(h, MaxBodyBytes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		dec.ServeHTTP(rec, r)
		if rec.status >= 400 {
			c.bad.Add(1)
		}
	})
}

// Handler returns the upstream's HTTP handler, for tests.
func Handler() http.Handler { return handler(&counters{}) }

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// countModel is an OIP model answering the number of input elements.
type countModel struct {
	name string
	dt   oip.Datatype
	dims []int64
	reqs *atomic.Int64
}

func (m countModel) Metadata() oip.ModelMetadata {
	in := "x"
	if m.dt == oip.Bytes {
		in = "text"
	}
	return oip.ModelMetadata{
		Name: m.name, Platform: "go",
		Inputs:  []oip.TensorMetadata{{Name: in, Datatype: m.dt, Shape: m.dims}},
		Outputs: []oip.TensorMetadata{{Name: "n", Datatype: oip.Int64, Shape: []int64{1}}},
	}
}

func (m countModel) Infer(_ context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	m.reqs.Add(1)
	n := int64(0)
	for _, t := range req.Inputs {
		n += int64(t.Len())
	}
	return &oip.InferResponse{ModelName: m.name, Outputs: []oip.Tensor{oip.NewTensor("n", []int64{1}, []int64{n})}}, nil
}

// Server is a running upstream.
type Server struct {
	// HTTPAddr and GRPCAddr are the listening addresses (127.0.0.1:port).
	HTTPAddr, GRPCAddr string

	c    counters
	hs   *http.Server
	gs   *grpc.Server
	wg   sync.WaitGroup
	once sync.Once
}

// Stats returns the counters.
func (s *Server) Stats() Stats { return s.c.stats() }

// Listen starts the upstream on two fresh 127.0.0.1 ports.
func Listen() (*Server, error) {
	s := &Server{}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hl.Close()
		return nil, err
	}
	s.HTTPAddr, s.GRPCAddr = hl.Addr().String(), gl.Addr().String()

	s.hs = &http.Server{Handler: handler(&s.c), IdleTimeout: 120 * time.Second, ReadHeaderTimeout: 30 * time.Second}
	s.hs.Protocols = new(http.Protocols)
	s.hs.Protocols.SetHTTP1(true)
	s.hs.Protocols.SetUnencryptedHTTP2(true)
	s.hs.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 256, MaxReceiveBufferPerStream: 4 << 20, MaxReceiveBufferPerConnection: 8 << 20}

	opts, err := grpcinfer.ServerOptions(grpcinfer.ServerConfig{})
	if err != nil {
		hl.Close()
		gl.Close()
		return nil, err
	}
	s.gs = grpc.NewServer(opts...)
	srv, err := oip.NewServer(oip.ServerConfig{Name: "meshbench-upstream", Models: []oip.Model{
		countModel{name: payload.ModelChat, dt: oip.Bytes, dims: []int64{-1}, reqs: &s.c.grpcReqs},
		countModel{name: payload.ModelVectors, dt: oip.FP32, dims: []int64{-1, -1}, reqs: &s.c.grpcReqs},
	}})
	if err != nil {
		hl.Close()
		gl.Close()
		return nil, err
	}
	srv.Register(s.gs)

	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = s.hs.Serve(countingListener{hl, &s.c.httpConns})
	}()
	go func() {
		defer s.wg.Done()
		_ = s.gs.Serve(countingListener{gl, &s.c.grpcConns})
	}()
	return s, nil
}

// Close stops both servers at once and waits for them.
func (s *Server) Close() {
	s.once.Do(func() {
		_ = s.hs.Close()
		s.gs.Stop()
		s.wg.Wait()
	})
}

// Serve runs an upstream for a parent process: it writes the ready line to out, answers
// "stats" lines from in with JSON Stats lines, and returns when in ends or ctx is done.
func Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	s, err := Listen()
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := fmt.Fprintf(out, "ready http=%s grpc=%s\n", s.HTTPAddr, s.GRPCAddr); err != nil {
		return err
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			switch strings.TrimSpace(line) {
			case "stats":
				b, _ := json.Marshal(s.Stats())
				if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
					return err
				}
			case "":
			default:
				if _, err := fmt.Fprintf(out, "error unknown command %q\n", line); err != nil {
					return err
				}
			}
		}
	}
}

// Handle is the parent's side of a running upstream process.
type Handle struct {
	// Proc is the upstream process.
	Proc *proc.Process
	// HTTPAddr and GRPCAddr are where it listens.
	HTTPAddr, GRPCAddr string

	mu  sync.Mutex
	in  io.WriteCloser
	out *bufio.Reader
}

// Start runs cmd (a program whose main calls Serve) as the upstream and waits for its ready
// line. Stop the process with h.Proc.Stop (closing its input makes it exit by itself).
func Start(ctx context.Context, cmd *exec.Cmd) (*Handle, error) {
	c, line, err := proc.StartPiped(ctx, "upstream", cmd, 15*time.Second)
	if err != nil {
		return nil, err
	}
	h := &Handle{Proc: c.Process, in: c.In, out: c.Out}
	if err := h.parseReady(line); err != nil {
		_ = c.Stop(time.Second)
		return nil, fmt.Errorf("upstream: %w; stderr: %s", err, c.Stderr())
	}
	return h, nil
}

func (h *Handle) parseReady(line string) error {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ready" || !strings.HasPrefix(f[1], "http=") || !strings.HasPrefix(f[2], "grpc=") {
		return fmt.Errorf("bad ready line %q", line)
	}
	h.HTTPAddr, h.GRPCAddr = strings.TrimPrefix(f[1], "http="), strings.TrimPrefix(f[2], "grpc=")
	for _, a := range []string{h.HTTPAddr, h.GRPCAddr} {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" {
			return fmt.Errorf("bad address %q in ready line", a)
		}
		if _, err := strconv.Atoi(port); err != nil {
			return fmt.Errorf("bad port in %q", a)
		}
	}
	return nil
}

// Stats asks the upstream for its counters.
func (h *Handle) Stats() (Stats, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := io.WriteString(h.in, "stats\n"); err != nil {
		return Stats{}, fmt.Errorf("upstream stats: %w", err)
	}
	line, err := h.out.ReadString('\n')
	if err != nil {
		return Stats{}, fmt.Errorf("upstream stats: %w", err)
	}
	var s Stats
	if err := json.Unmarshal([]byte(line), &s); err != nil {
		return Stats{}, fmt.Errorf("upstream stats %q: %w", line, err)
	}
	return s, nil
}

// Stop closes the upstream's input (it exits on its own) and stops the process.
func (h *Handle) Stop() error {
	h.mu.Lock()
	_ = h.in.Close()
	h.mu.Unlock()
	return h.Proc.Stop(3 * time.Second)
}
