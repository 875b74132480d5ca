package proc

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestStopKillsTheGroup starts a shell that leaves a grandchild in its process group and
// ignores SIGTERM; Stop must end both.
func TestStopKillsTheGroup(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p, err := Start("sleeper", exec.Command(sh, "-c", `trap "" TERM; sleep 30 & echo child $! >&2; wait`))
	if err != nil {
		t.Fatal(err)
	}
	var child int
	for range 200 {
		if _, err := fmt.Sscanf(p.Stderr(), "child %d", &child); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if child == 0 || !alive(child) {
		t.Fatalf("no grandchild seen (stderr %q)", p.Stderr())
	}
	if pgid, _ := syscall.Getpgid(p.PID()); pgid != p.PID() {
		t.Errorf("pgid %d, want its own %d", pgid, p.PID())
	}
	start := time.Now()
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if !p.Exited() {
		t.Error("leader still running")
	}
	// The grandchild was SIGKILLed with the group; it may take a moment to be reaped by init.
	for range 100 {
		if !alive(child) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if alive(child) {
		var st syscall.WaitStatus
		_, _ = syscall.Wait4(child, &st, syscall.WNOHANG, nil)
		if alive(child) && !zombie(child) {
			t.Errorf("grandchild %d survived Stop", child)
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Stop took %v", el)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func zombie(pid int) bool {
	b, err := exec.Command("ps", "-o", "stat=", "-p", fmt.Sprint(pid)).Output()
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "Z")
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
	err = WaitListening(context.Background(), p, addr, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited before listening") || !strings.Contains(err.Error(), "boom") {
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
