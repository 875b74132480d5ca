package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain lets this test binary serve as the upstream process: the harness re-executes
// its own executable with -upstream, as the real command does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-upstream" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-concurrency", "1,x"},
		{"-concurrency", "0"},
		{"-protocols", "http3"},
		{"-proxies", "squid"},
		{"-hops", "3"},
		{"-nosuchflag"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, strings.NewReader(""), &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}
}

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-h"}, strings.NewReader(""), &out, &errb); code != 0 || !strings.Contains(errb.String(), "-quick") {
		t.Errorf("-h: exit %d, usage %q", code, errb.String())
	}
}

func TestDirectRun(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"-quick", "-proxies", "none", "-protocols", "http1,grpc", "-requests", "20", "-duration", "1s",
		"-concurrency", "2", "-payloads=false", "-out", dir}, strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	for _, f := range []string{"results.json", "results.md", "latency.svg", "latency.png"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(out.String(), "5 runs in") {
		t.Errorf("stdout %q", out.String())
	}
	if !strings.Contains(errb.String(), "[5/5] hops grpc direct grpcinfer c=2") {
		t.Errorf("progress %q", errb.String())
	}
}
