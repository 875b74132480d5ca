package proc

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/benchmarks/internal/procstat"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds the tests' waits for events that come within milliseconds on a quiet
// machine; it is that large so that they hold on a loaded one, and costs nothing when they
// pass.
const waitLimit = time.Minute

// startShell starts script under sh as a Process that the test stops at its end.
func startShell(t *testing.T, name, script string) *Process {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p, err := Start(name, exec.Command(sh, "-c", script))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(0) })
	return p
}

// waitFor polls cond every 10 ms until it holds, failing the test after waitLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, waitLimit)
		}
	}
}

// children waits for the first line of p's standard error, "children PID...", and returns
// the pids.
func children(t *testing.T, p *Process, n int) []int {
	t.Helper()
	waitFor(t, "children line on stderr", func() bool { return strings.Contains(p.Stderr(), "\n") })
	line, _, _ := strings.Cut(p.Stderr(), "\n")
	f := strings.Fields(line)
	if len(f) != n+1 || f[0] != "children" {
		t.Fatalf("stderr %q: want a line \"children\" and %d pids", p.Stderr(), n)
	}
	pids := make([]int, n)
	for i := range pids {
		var err error
		if pids[i], err = strconv.Atoi(f[i+1]); err != nil {
			t.Fatalf("stderr %q: %v", p.Stderr(), err)
		}
	}
	return pids
}

// pidfd is a handle on one process that, unlike its pid, cannot come to name another
// process; it becomes readable the moment the process exits.
type pidfd int

func openPidfd(t *testing.T, pid int) pidfd {
	t.Helper()
	const sysPidfdOpen = 434 // the same number on every Linux architecture Go supports but MIPS
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno == syscall.ENOSYS {
		t.Skip("the kernel has no pidfd_open (Linux 5.3)")
	}
	if errno != 0 {
		t.Fatalf("pidfd_open(%d): %v", pid, errno)
	}
	t.Cleanup(func() { syscall.Close(int(fd)) })
	return pidfd(fd)
}

// exited reports, without waiting, whether the process has exited.
func (fd pidfd) exited(t *testing.T) bool {
	t.Helper()
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(ep)
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(fd), &syscall.EpollEvent{Events: syscall.EPOLLIN}); err != nil {
		t.Fatal(err)
	}
	var ev [1]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(ep, ev[:], 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
}

// groupOf lists the live processes of p's group, failing the test if it cannot.
func groupOf(t *testing.T, p *Process) []procstat.Stat {
	t.Helper()
	live, err := liveMembers(p.PID())
	if err != nil {
		t.Fatal(err)
	}
	return live
}

// TestStopKillsTheGroup starts a shell that ignores SIGTERM and leaves two grandchildren in
// its process group that ignore it too (an ignored signal stays ignored across fork and
// exec): one shares the shell's standard error, the other has closed it, so that nothing
// but the group itself ties it to the leader. The moment Stop returns, both must have
// exited, the leader must be reaped and no process of the group may be alive: the test
// looks once, without waiting.
func TestStopKillsTheGroup(t *testing.T) {
	p := startShell(t, "sleeper", `trap "" TERM
sleep 300 & a=$!
sleep 300 </dev/null >/dev/null 2>&1 & b=$!
echo children $a $b >&2
wait`)
	pids := children(t, p, 2)
	fds := []pidfd{openPidfd(t, pids[0]), openPidfd(t, pids[1])}
	for i, fd := range fds {
		if fd.exited(t) {
			t.Fatalf("grandchild %d ended before Stop", pids[i])
		}
	}
	if pgid, _ := syscall.Getpgid(p.PID()); pgid != p.PID() {
		t.Errorf("pgid %d, want its own %d", pgid, p.PID())
	}
	if live := groupOf(t, p); len(live) != 3 {
		t.Fatalf("before Stop the group has %s, want the shell and two sleeps", describe(live))
	}

	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for i, fd := range fds {
		if !fd.exited(t) {
			t.Errorf("grandchild %d survived Stop", pids[i])
		}
	}
	if live := groupOf(t, p); len(live) > 0 {
		t.Errorf("alive in the group after Stop: %s", describe(live))
	}
	if !p.Exited() {
		t.Error("Exited() = false after Stop")
	}
	if ps := p.Cmd.ProcessState; ps == nil {
		t.Error("leader not reaped by Stop")
	} else if ws := ps.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGKILL {
		t.Errorf("leader ended with %v, want SIGKILL (it ignores SIGTERM)", ps)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStopAfterTheLeaderExited has the leader exit on its own and leave a worker behind:
// the leader must stay unreaped until Stop, so that its pid, which is the group id Stop
// signals, cannot have been given to another process, and Stop must still end the worker.
func TestStopAfterTheLeaderExited(t *testing.T) {
	p := startShell(t, "quitter", `sleep 300 </dev/null >/dev/null 2>&1 & echo children $! >&2`)
	worker := openPidfd(t, children(t, p, 1)[0])
	waitFor(t, "exit of the leader", p.Exited)
	st, err := procstat.Reader{}.Process(p.PID())
	if err != nil || st.State != 'Z' {
		t.Fatalf("exited leader: stat %+v, %v; want a zombie that holds the group id", st, err)
	}
	if worker.exited(t) {
		t.Fatal("worker ended before Stop")
	}
	if err := p.Stop(time.Minute); err != nil {
		t.Errorf("Stop of a leader that exited with status 0: %v", err)
	}
	if !worker.exited(t) {
		t.Error("worker survived Stop")
	}
	if live := groupOf(t, p); len(live) > 0 {
		t.Errorf("alive in the group after Stop: %s", describe(live))
	}
}

// TestStopGraceful checks that a group that ends on SIGTERM is not made to wait out the grace
// period, nor killed: the leader's end must be SIGTERM's doing.
func TestStopGraceful(t *testing.T) {
	p := startShell(t, "graceful", `sleep 300 & echo children $! >&2; wait`)
	worker := openPidfd(t, children(t, p, 1)[0])
	const grace = waitLimit
	start := time.Now()
	if err := p.Stop(grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if el := time.Since(start); el >= grace {
		t.Errorf("Stop took %v: it waited out the grace period", el)
	}
	if ws := p.Cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGTERM {
		t.Errorf("leader ended with %v, want SIGTERM", p.Cmd.ProcessState)
	}
	if !worker.exited(t) {
		t.Error("worker survived Stop")
	}
}

// TestExitStatus checks how the leader's end is told before Stop reaps it against what
// package os says once it has.
func TestExitStatus(t *testing.T) {
	for _, script := range []string{"exit 0", "exit 3", "kill -KILL $$", "kill -TERM $$"} {
		t.Run(script, func(t *testing.T) {
			p := startShell(t, "status", script)
			waitFor(t, "exit", p.Exited)
			got := p.status
			_ = p.Stop(0)
			if want := p.Cmd.ProcessState.String(); got != want {
				t.Errorf("status before reaping %q, after %q", got, want)
			}
		})
	}
}

func TestEarlyExitAndSet(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p, err := Start("failing", exec.Command(sh, "-c", "echo boom >&2; exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	port, err := FreePort()
	if err != nil || port <= 0 {
		t.Fatal(port, err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	err = WaitListening(context.Background(), p, addr, waitLimit)
	if err == nil || !strings.Contains(err.Error(), "exited before listening") ||
		!strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("WaitListening = %v", err)
	}
	var s Set
	s.Add(p)
	if err := s.StopAll(time.Second); err == nil || !strings.Contains(err.Error(), "exited early") {
		t.Errorf("StopAll of a process that failed = %v", err)
	}
	if err := s.StopAll(time.Second); err != nil {
		t.Errorf("StopAll of an empty set = %v", err)
	}
}

func TestWaitListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := WaitListening(context.Background(), nil, l.Addr().String(), time.Second); err != nil {
		t.Error(err)
	}
	l.Close()
	<-done
	if err := WaitListening(context.Background(), nil, l.Addr().String(), 100*time.Millisecond); err == nil {
		t.Error("closed port: want an error")
	}
}

func TestStartPiped(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	ctx := context.Background()
	t.Run("ready", func(t *testing.T) {
		c, line, err := StartPiped(ctx, "echo", exec.Command(sh, "-c", "echo ready 1; read x; echo got $x; cat >/dev/null"), waitLimit)
		if err != nil {
			t.Fatal(err)
		}
		if line != "ready 1" {
			t.Errorf("ready line %q", line)
		}
		fmt.Fprintln(c.In, "two")
		if got, err := c.Out.ReadString('\n'); got != "got two\n" || err != nil {
			t.Errorf("after the ready line: %q, %v", got, err)
		}
		c.In.Close() // the child's cat ends, then the child
		waitFor(t, "exit after the input closed", c.Exited)
		if err := c.Stop(time.Second); err != nil {
			t.Error(err)
		}
	})
	t.Run("no line", func(t *testing.T) {
		_, _, err := StartPiped(ctx, "mute", exec.Command(sh, "-c", "exec sleep 60"), 100*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "mute: no ready line within 100ms; signal: terminated; stderr: ") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("early exit", func(t *testing.T) {
		_, _, err := StartPiped(ctx, "failing", exec.Command(sh, "-c", "echo boom >&2; exit 3"), waitLimit)
		if err == nil || err.Error() != "failing: EOF; exit status 3; stderr: boom\n" {
			t.Errorf("err = %v", err)
		}
	})
}
