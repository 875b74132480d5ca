package llmtest

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// Transport returns a new HTTP/1.1 transport that connects to the server in memory: each
// dial returns one end of a [net.Pipe] and the server serves the other end, whatever host
// and port the request names. No socket is opened, so a test under testing/synctest can use
// it with the fake clock (create and close the server inside the bubble). The caller may
// change the transport's fields; Close closes its idle connections. After Close, dialing
// fails with [net.ErrClosed].
func (s *Server) Transport() *http.Transport {
	t := &http.Transport{
		DialContext:         s.dialMemory,
		MaxIdleConnsPerHost: 64,
	}
	s.track(t)
	return t
}

// dialMemory hands the server end of a new pipe to the in-memory listener.
func (s *Server) dialMemory(ctx context.Context, _, _ string) (net.Conn, error) {
	if err := s.serveMemory(); err != nil {
		return nil, err
	}
	client, server := net.Pipe()
	var err error
	select {
	case s.mem.conns <- server:
		return client, nil
	case <-s.mem.done:
		err = net.ErrClosed
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = client.Close()
	_ = server.Close()
	return nil, err
}

// serveMemory starts serving the in-memory listener on first use, in the caller's goroutine
// group (so inside the caller's synctest bubble).
func (s *Server) serveMemory() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	if !s.memServing {
		s.memServing = true
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			_ = s.hs.Serve(s.mem)
		}()
	}
	return nil
}

// memListener is a net.Listener whose connections come from dialMemory.
type memListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newMemListener() *memListener {
	return &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *memListener) Addr() net.Addr { return memAddr{} }

type memAddr struct{}

func (memAddr) Network() string { return "memory" }
func (memAddr) String() string  { return "llmtest.invalid:80" }
