package proc

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// killWait bounds how long Stop waits, after SIGKILL, for the group to end. The kernel ends a
// killed process as soon as it runs again, which on a loaded machine can take a while but not
// this long; a process stuck in uninterruptible sleep (a hung disk or network file system)
// is reported instead of hanging the benchmark.
const killWait = 30 * time.Second

// Process is a started child process, leader of its own process group.
type Process struct {
	// Name labels the process in errors, such as "haproxy hop 1".
	Name string
	// Cmd is the running command. Do not Wait on it: Stop reaps the process.
	Cmd *exec.Cmd

	stderr *lockedBuffer
	// exited is closed once the leader has exited and its standard error is closed. The
	// leader is not reaped then: it stays a zombie until Stop, so that its process id, and so
	// its group's id, cannot be given to another process before Stop has signalled the group.
	exited chan struct{}
	status string // how the leader ended, such as "exit status 3"; set before exited closes

	once    sync.Once
	stopErr error
}

// PID returns the process id, which is also its process group id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Stderr returns what the process wrote to standard error so far (at most 64 KiB). Once
// Exited reports true it is complete.
func (p *Process) Stderr() string { return p.stderr.String() }

// Exited reports whether the process has ended and every process that shared its standard
// error has closed it.
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Start starts cmd as the leader of a new process group that the kernel kills if this
// process dies. Its standard error is captured for Stderr unless Cmd.Stderr is set.
func Start(name string, cmd *exec.Cmd) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p := &Process{Name: name, Cmd: cmd, stderr: &lockedBuffer{max: 64 << 10}, exited: make(chan struct{})}
	// Our own pipe rather than an io.Writer for Cmd.Stderr: with a writer, only Cmd.Wait
	// would tell when the output is complete, and Cmd.Wait reaps the leader.
	var r *os.File
	if cmd.Stderr == nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		r, cmd.Stderr = pr, pw
		defer pw.Close() // the child has its own copy
	}
	if err := cmd.Start(); err != nil {
		if r != nil {
			r.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		if r != nil {
			_, _ = io.Copy(p.stderr, r)
			r.Close()
		}
		p.status = waitExited(cmd.Process.Pid)
		close(p.exited)
	}()
	return p, nil
}

// Stop ends the process group. It sends SIGTERM to the group and waits up to grace for the
// leader to exit and no process of the group to be left alive, then sends SIGKILL to the
// group and waits up to half a minute more for the same, and reaps the leader. A process of
// the group that has exited counts as ended even if its parent has not reaped it yet (a
// zombie). So when Stop returns nil, no process of the group is running.
//
// The error is the process's exit error when it had already exited unexpectedly (before
// Stop), or says which processes are still alive after SIGKILL, else nil. Stop is safe to
// call more than once and from several goroutines; later calls return the first one's result.
func (p *Process) Stop(grace time.Duration) error {
	p.once.Do(func() { p.stopErr = p.stop(grace) })
	return p.stopErr
}

func (p *Process) stop(grace time.Duration) error {
	exitedEarly := p.Exited()
	// The leader is not reaped yet (see exited), so the group id still names our group.
	pgid := p.PID()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	_ = p.waitGone(time.Now().Add(grace)) // what is left gets SIGKILL
	// Always: the leader may be gone while workers it left linger.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if err := p.waitGone(time.Now().Add(killWait)); err != nil {
		return fmt.Errorf("stop %s: %w", p.Name, err)
	}
	if err := p.Cmd.Wait(); exitedEarly && err != nil {
		return fmt.Errorf("%s exited early: %w; stderr: %s", p.Name, err, p.Stderr())
	}
	return nil
}

// waitGone waits until the leader has exited, its standard error is closed and no process of
// its group is alive, or until deadline; the error says what is left.
func (p *Process) waitGone(deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
	// The leader's exit does not wait for the rest of its group: watch that through /proc,
	// with pauses from 1 ms up to 50 ms.
	pgid := p.PID()
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		live, err := liveMembers(pgid)
		if err != nil {
			return err
		}
		if len(live) == 0 && p.Exited() {
			return nil
		}
		left := time.Until(deadline)
		switch {
		case left > 0:
			time.Sleep(min(pause, left))
		case len(live) > 0:
			return fmt.Errorf("still alive in process group %d: %s", pgid, describe(live))
		default:
			return fmt.Errorf("process %d has exited but its standard error is still held open by a process outside its group", pgid)
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
