// Package cutlisten holds a listener whose accepted connections a test can cut all at
// once, as a crashing server or a sidecar resetting its upstream connections would. It is
// imported by tests only.
package cutlisten

import (
	"net"
	"sync"
)

// Listener remembers the connections it accepts so that Cut can close them.
type Listener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

// New wraps l.
func New(l net.Listener) *Listener { return &Listener{Listener: l} }

// Accept accepts a connection and remembers it.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// Cut closes every connection accepted so far; the listener goes on accepting.
func (l *Listener) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}
