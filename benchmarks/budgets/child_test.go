package budgets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/infermesh/infermesh/benchmarks/internal/proc"
	"github.com/infermesh/infermesh/benchmarks/internal/upstream"
	"github.com/infermesh/infermesh/llmclient/llmtest"
)

// The roles this test binary takes when it re-executes itself as a server, so that the
// server's work and memory stay out of the measured process. The role is the first
// argument, before any test flag.
const (
	// roleUpstream is meshbench's upstream (package upstream), for the proxy hop.
	roleUpstream = "-budgets-upstream"
	// roleHold is an llmtest server that sends every stream's first content chunk and then
	// holds the stream open until the client goes away.
	roleHold = "-budgets-hold"
)

// runRole runs the role named by args[0], if any, and reports whether it did.
func runRole(args []string) (code int, ran bool) {
	if len(args) == 0 {
		return 0, false
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch args[0] {
	case roleUpstream:
		err = upstream.Serve(ctx, os.Stdin, os.Stdout)
	case roleHold:
		err = serveHold(os.Stdin, os.Stdout)
	default:
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", args[0], err)
		return 1, true
	}
	return 0, true
}

// serveHold serves streams that stop after their first content chunk (a role chunk, then
// one "tok " chunk) until the client goes away. It writes "ready <url>" to out and returns
// when in ends.
func serveHold(in io.Reader, out io.Writer) error {
	srv := llmtest.NewServer(llmtest.WithChunks(8, "tok "), llmtest.WithMaxRecords(1),
		llmtest.WithRules(llmtest.Rule{Fault: llmtest.StallAfter(1, 0)}))
	defer srv.Close()
	if _, err := fmt.Fprintf(out, "ready %s\n", srv.URL); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, in)
	return err
}

// holdServer is the parent's side of a roleHold process.
type holdServer struct {
	*proc.Piped
	url string
}

// startHold starts a roleHold process and waits for its ready line.
func startHold(ctx context.Context) (*holdServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c, line, err := proc.StartPiped(ctx, "hold server", exec.Command(exe, roleHold), 15*time.Second)
	if err != nil {
		return nil, err
	}
	h := &holdServer{Piped: c}
	url, ok := strings.CutPrefix(line, "ready ")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		return nil, errors.Join(fmt.Errorf("hold server: bad ready line %q", line), h.stop())
	}
	h.url = url
	return h, nil
}

// stop closes the server's input, so that it exits, and stops the process.
func (h *holdServer) stop() error {
	_ = h.In.Close()
	return h.Stop(5 * time.Second)
}
