package proc

import (
	"context"
	"fmt"
	"net"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it
// for a listener that is closed at once. Another process may take it before it is used, so a
// caller that starts a server on it should be ready to retry.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitListening waits until addr accepts TCP connections, p exits, or timeout passes.
func WaitListening(ctx context.Context, p *Process, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited before listening on %s: %v; stderr: %s", p.Name, addr, p.status, p.Stderr())
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			name := addr
			if p != nil {
				name = p.Name + " on " + addr + "; stderr: " + p.Stderr()
			}
			return fmt.Errorf("not listening: %s: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}
