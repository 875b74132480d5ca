package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a started child process, leader of its own process group.
type Process struct {
	// Name labels the process in errors, such as "haproxy hop 1".
	Name string
	// Cmd is the running command.
	Cmd *exec.Cmd

	stderr *lockedBuffer
	done   chan struct{}
	err    error // Wait's result, valid after done is closed
	once   sync.Once
}

// PID returns the process id, which is also its process group id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Stderr returns what the process wrote to standard error so far (at most 64 KiB).
func (p *Process) Stderr() string { return p.stderr.String() }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts cmd as the leader of a new process group that the kernel kills if this
// process dies. Its standard error is captured for Stderr; standard output goes to stdout
// if it is not nil (Cmd.Stdout is left alone when set).
func Start(name string, cmd *exec.Cmd) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p := &Process{Name: name, Cmd: cmd, stderr: &lockedBuffer{max: 64 << 10}, done: make(chan struct{})}
	if cmd.Stderr == nil {
		cmd.Stderr = p.stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Stop sends SIGTERM to the process group, waits up to grace for the leader to exit, then
// sends SIGKILL to the group and waits for the leader. It is safe to call more than once.
// The error is the process's exit error when it had already exited unexpectedly (before
// Stop), else nil.
func (p *Process) Stop(grace time.Duration) error {
	var exitedEarly bool
	p.once.Do(func() {
		exitedEarly = p.Exited()
		pgid := p.PID()
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		}
		// The leader may be gone while workers linger: kill the group either way.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	})
	if exitedEarly && p.err != nil {
		return fmt.Errorf("%s exited early: %w; stderr: %s", p.Name, p.err, p.Stderr())
	}
	return nil
}

// Set is the processes of one benchmark run. Its zero value is ready to use; it is safe for
// concurrent use.
type Set struct {
	mu    sync.Mutex
	procs []*Process
}

// Add tracks p so that StopAll stops it.
func (s *Set) Add(p *Process) {
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
}

// StopAll stops every tracked process, the last started first, and forgets them.
func (s *Set) StopAll(grace time.Duration) error {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		errs = append(errs, procs[i].Stop(grace))
	}
	return errors.Join(errs...)
}

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
			return fmt.Errorf("%s exited before listening on %s: %v; stderr: %s", p.Name, addr, p.err, p.Stderr())
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

// lockedBuffer keeps the first max bytes written to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

var _ io.Writer = (*lockedBuffer)(nil)

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
