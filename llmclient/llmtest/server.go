package llmtest

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
)

// InMemoryURL is the URL of a server that is not started. Requests sent through the
// server's [Server.Transport] reach the server whatever host they name, so this URL (like
// any other) works with it; through a network transport it never resolves.
const InMemoryURL = "http://llmtest.invalid"

// A Server is an OpenAI-compatible HTTP server for tests, listening on 127.0.0.1 or served in
// memory. All its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL of the server, without "/v1": "http://127.0.0.1:<port>" once
	// started, [InMemoryURL] before. Point an OpenAI client at URL + "/v1".
	URL string

	cfg     config
	handler http.Handler
	hs      *http.Server
	done    chan struct{} // closed by Close; ends stalls and waits
	mem     *memListener

	active  sync.WaitGroup // running handlers
	serving sync.WaitGroup // Serve goroutines

	mu         sync.Mutex
	connsGone  *sync.Cond // signalled (with mu) when conns drops to 0
	conns      int        // connections the HTTP server serves
	started    bool
	closed     bool
	memServing bool
	netClient  *http.Client
	memClient  *http.Client
	transports []*http.Transport // closed (idle connections) by Close
	seq        int
	records    []Request
	script     *script
	delays     *delayer
	limits     *limiter // nil without WithRateLimit
}

// NewServer returns a server listening on 127.0.0.1 with the given options. The caller
// should call Close when finished, to shut it down. It panics if an option holds an invalid
// value or if it cannot listen.
func NewServer(opts ...Option) *Server {
	s := NewUnstartedServer(opts...)
	s.Start()
	return s
}

// NewUnstartedServer returns a server that does not listen yet. It serves at once through
// [Server.Handler], [Server.Transport] and [Server.Client] (in memory), which is what tests
// under testing/synctest need: create and close the server inside the bubble, and do not
// call Start there (a real socket is not durably blocking, so the fake clock would never
// advance). Call [Server.Start] to listen on 127.0.0.1. It panics if an option holds an
// invalid value.
func NewUnstartedServer(opts ...Option) *Server {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.invalidOption != "" {
		panic("llmtest: " + cfg.invalidOption)
	}
	s := &Server{
		URL:    InMemoryURL,
		cfg:    cfg,
		done:   make(chan struct{}),
		mem:    newMemListener(),
		script: newScript(cfg.source, cfg.phase),
		delays: newDelayer(cfg.source),
		limits: newLimiter(cfg.rateLimit),
	}
	var h http.Handler = http.HandlerFunc(s.serveHTTP)
	for i := len(cfg.middleware) - 1; i >= 0; i-- {
		h = cfg.middleware[i](h)
	}
	s.handler = h
	s.connsGone = sync.NewCond(&s.mu)
	s.hs = &http.Server{
		Handler:   h,
		ConnState: s.connState,
		ErrorLog:  log.New(io.Discard, "", 0), // quiet, as a library must be by default
	}
	return s
}

// TB is the part of [testing.TB] that [NewTestServer] uses.
type TB interface {
	Helper()
	Cleanup(func())
}

// NewTestServer returns a server listening on 127.0.0.1 and registers its Close with
// tb.Cleanup.
func NewTestServer(tb TB, opts ...Option) *Server {
	tb.Helper()
	s := NewServer(opts...)
	tb.Cleanup(s.Close)
	return s
}

// Start makes an unstarted server listen on 127.0.0.1 and sets URL. It panics if the server
// is started or closed, or if it cannot listen.
func (s *Server) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("llmtest: Server already started")
	}
	if s.closed {
		panic("llmtest: Server already closed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("llmtest: failed to listen on a port: %v", err))
	}
	s.URL = "http://" + l.Addr().String()
	s.started = true
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		_ = s.hs.Serve(l) // returns http.ErrServerClosed after Close
	}()
}

// Handler returns the server's HTTP handler (wrapped in the [WithMiddleware] middleware),
// to mount in another server. Faults, records and Close work the same through it; a
// [KindReset] fault needs a ResponseWriter that can hijack the connection (else it aborts
// the response as a stream reset does).
func (s *Server) Handler() http.Handler { return s.handler }

// Client returns an HTTP client for the server, reused across calls: it connects over
// 127.0.0.1 once the server is started, and in memory (through [Server.Transport]) before.
// Close closes its idle connections.
func (s *Server) Client() *http.Client {
	s.mu.Lock()
	started := s.started
	if started && s.netClient != nil {
		defer s.mu.Unlock()
		return s.netClient
	}
	if !started && s.memClient != nil {
		defer s.mu.Unlock()
		return s.memClient
	}
	s.mu.Unlock()

	var t *http.Transport
	if started {
		t = &http.Transport{
			DialContext:         (&net.Dialer{}).DialContext,
			MaxIdleConnsPerHost: 64,
		}
		s.track(t)
	} else {
		t = s.Transport()
	}
	c := &http.Client{Transport: t}

	s.mu.Lock()
	defer s.mu.Unlock()
	if started {
		if s.netClient == nil {
			s.netClient = c
		}
		return s.netClient
	}
	if s.memClient == nil {
		s.memClient = c
	}
	return s.memClient
}

// track registers t so that Close closes its idle connections.
func (s *Server) track(t *http.Transport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transports = append(s.transports, t)
}

// Close shuts the server down: it ends stalled and waiting handlers at once, closes the
// listeners and every connection, waits for the handlers to return, and closes the idle
// connections of the transports the server handed out. Close returns when every goroutine the
// server started has ended. It may be called more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()

	// hs.Close returns once its Serve loops have stopped accepting, then closes every
	// connection, so no connection appears after it.
	_ = s.hs.Close()
	_ = s.mem.Close()
	s.active.Wait()
	s.serving.Wait()

	s.mu.Lock()
	for s.conns > 0 {
		s.connsGone.Wait()
	}
	ts := s.transports
	s.transports = nil
	s.mu.Unlock()
	for _, t := range ts {
		t.CloseIdleConnections()
	}
}

// connState counts the connections the HTTP server serves, so that Close can wait until
// their goroutines are gone. (After a 413 the HTTP server lingers up to half a second on the
// connection, to let the client read the response.)
func (s *Server) connState(_ net.Conn, state http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch state {
	case http.StateNew:
		s.conns++
	case http.StateClosed, http.StateHijacked:
		s.conns--
		if s.conns == 0 {
			s.connsGone.Broadcast()
		}
	}
}

// enter registers a running handler; it reports false once the server is closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.active.Add(1)
	return true
}
