// Package redistest starts a real redis-server from the OS package for tests: on a free
// loopback port, with persistence off, stopped when the test ends. Without the binary a
// test is skipped, except under CI=true, where it fails. No fake stands in for Redis in
// the tests that claim shared behaviour.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server from the OS package that a test starts on a free loopback
// port, with persistence off, and stops.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	Addr string
	cmd  *exec.Cmd
}

// Start starts a redis-server for t and stops it when t ends. Without the binary the
// test is skipped, except under CI=true, where it fails.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is required under CI=true: %v", err)
		}
		t.Skipf("redis-server not found (%v); install the redis-server package to run the shared-mode tests", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for attempt := 0; ; attempt++ { // a free port can be taken before redis binds it
		s.Addr = FreeAddr(t)
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatal(err)
		}
	}
	t.Cleanup(s.Kill)
	return s
}

// FreeAddr returns a loopback address with a free port (for a server that is not there).
func FreeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs redis-server on s.Addr and waits until it answers PING.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	log, err := os.Create(filepath.Join(s.dir, "redis-"+port+".log"))
	if err != nil {
		return err
	}
	defer log.Close()
	s.cmd = exec.Command(s.bin, "--save", "", "--appendonly", "no", "--port", port, "--bind", "127.0.0.1",
		"--dir", s.dir, "--daemonize", "no")
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ping(s.Addr) {
			return nil
		}
	}
	s.Kill()
	out, _ := os.ReadFile(log.Name())
	return fmt.Errorf("redis-server on %s did not answer within 10s:\n%s", s.Addr, out)
}

// ping reports whether a Redis on addr answers PING.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// Kill stops the server at once (SIGKILL) and waits for it; it does nothing when stopped.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Pause stops the server without killing it (SIGSTOP): it accepts connections but answers
// nothing, as an overloaded Redis does. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server answer again (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// QuietLogs drops go-redis's log lines, which tests of a Redis that is down would fill
// with failed dials. Call it from TestMain.
func QuietLogs() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
