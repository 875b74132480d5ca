package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// Piped is a child that talks with its parent over its standard input and output: it
// announces itself with a ready line, and exits when its input ends.
type Piped struct {
	*Process
	// In is the child's standard input; closing it asks the child to exit.
	In io.WriteCloser
	// Out reads the child's standard output, after the ready line.
	Out *bufio.Reader
}

// StartPiped starts cmd as [Start] does, with pipes to its standard input and output, and
// waits for the first line it writes, which it returns without its line end. When no line
// comes within wait, or ctx ends first, it stops the child and returns an error that holds
// the child's standard error.
func StartPiped(ctx context.Context, name string, cmd *exec.Cmd, wait time.Duration) (*Piped, string, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	p, err := Start(name, cmd)
	if err != nil {
		return nil, "", err
	}
	c := &Piped{Process: p, In: in, Out: bufio.NewReader(out)}
	type ready struct {
		line string
		err  error
	}
	ch := make(chan ready, 1)
	go func() { // ends when the line comes or the child's output closes (Stop)
		line, err := c.Out.ReadString('\n')
		ch <- ready{strings.TrimRight(line, "\r\n"), err}
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	var r ready
	select {
	case r = <-ch:
	case <-t.C:
		r.err = fmt.Errorf("no ready line within %v", wait)
	case <-ctx.Done():
		r.err = ctx.Err()
	}
	if r.err != nil {
		// Stop first: then the child's end is known and its standard error complete.
		stopErr := p.Stop(time.Second)
		err := fmt.Errorf("%s: %w; %s; stderr: %s", name, r.err, p.status, p.Stderr())
		if stopErr != nil && !errors.As(stopErr, new(*exec.ExitError)) { // an exit status is in err already
			err = errors.Join(err, stopErr)
		}
		return nil, "", err
	}
	return c, r.line, nil
}
