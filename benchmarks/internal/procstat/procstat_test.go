package procstat

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
		want Stat
	}{
		{
			name: "plain",
			line: "15630 (cat) R 15628 15628 11131 0 -1 4194304 94 0 0 0 7 3 0 0 20 0 1 0 132631 3133440 381 18446744073709551615 0\n",
			want: Stat{PID: 15630, Comm: "cat", State: 'R', PPID: 15628, PGRP: 15628, UTime: 7, STime: 3},
		},
		{
			name: "comm with spaces and parens",
			line: "42 (a) b (c)) S 1 40 40 0 -1 0 0 0 0 0 1234 567 0 0 20 0 4 0 1 1 1 1",
			want: Stat{PID: 42, Comm: "a) b (c)", State: 'S', PPID: 1, PGRP: 40, UTime: 1234, STime: 567},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Parse = %+v, want %+v", got, tt.want)
			}
			if got.CPU() != TicksToDuration(tt.want.UTime+tt.want.STime) {
				t.Fatalf("CPU = %v", got.CPU())
			}
		})
	}
	if d := (Stat{UTime: 150, STime: 50}).CPU(); d != 2*time.Second {
		t.Fatalf("200 ticks = %v, want 2s", d)
	}
}

func TestParseMalformed(t *testing.T) {
	t.Parallel()
	for _, line := range []string{
		"",
		"12 cat R 1 2",
		"x (cat) R 1 2 3 0 -1 0 0 0 0 0 1 2 0",
		"12 (cat) R 1 2 3",
		"12 (cat) RR 1 2 3 0 -1 0 0 0 0 0 1 2 0",
		"12 (cat) R x 2 3 0 -1 0 0 0 0 0 1 2 0",
		"12 (cat) R 1 2 3 0 -1 0 0 0 0 0 -1 2 0",
		")12 (cat R 1 2 3 0 -1 0 0 0 0 0 1 2 0",
	} {
		if _, err := Parse([]byte(line)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) err = %v, want ErrMalformed", line, err)
		}
	}
}

func TestGroupFakeProc(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(pid, line string) {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("100", "100 (nginx) S 1 100 100 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 1 1 1")
	write("101", "101 (nginx) S 100 100 100 0 -1 0 0 0 0 0 200 100 0 0 20 0 1 0 1 1 1")
	write("102", "102 (other) S 1 102 102 0 -1 0 0 0 0 0 999 999 0 0 20 0 1 0 1 1 1")
	write("103", "garbage")
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := Reader{Root: root}
	cpu, n, err := r.Group(100)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 || cpu != TicksToDuration(315) {
		t.Fatalf("Group(100) = %v, %d; want %v, 2", cpu, n, TicksToDuration(315))
	}
	if _, _, err := r.Group(555); err == nil {
		t.Fatal("Group of a missing group: want an error")
	}
}

func TestRealProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux /proc")
	}
	t.Parallel()
	var r Reader
	s, err := r.Process(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.PPID != os.Getppid() {
		t.Fatalf("self stat %+v: pid/ppid mismatch (%d, %d)", s, os.Getpid(), os.Getppid())
	}
	// Burn some CPU and check the counter moves (ticks are 10 ms).
	before := s.CPU()
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	after, err := r.Process(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU() <= before {
		t.Fatalf("CPU did not grow after a 300 ms spin (%v -> %v, %d loops)", before, after.CPU(), x)
	}
	cpu, n, err := r.Group(s.PGRP)
	if err != nil || n < 1 || cpu < after.CPU()-time.Second {
		t.Fatalf("Group(own group) = %v, %d, %v", cpu, n, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("15630 (cat) R 15628 15628 11131 0 -1 4194304 94 0 0 0 7 3 0 0 20 0 1 0 132631"))
	f.Add([]byte("42 (a) b (c)) S 1 40 40 0 -1 0 0 0 0 0 1234 567 0 0 20 0 4 0 1 1 1 1"))
	f.Add([]byte("1 () Z 0 0 0 0 0 0 0 0 0 0 0 0 0"))
	f.Add([]byte(")("))
	f.Fuzz(func(t *testing.T, line []byte) {
		s, err := Parse(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if s.PID < 0 {
			t.Fatalf("negative pid from %q", line)
		}
		_ = s.CPU()
	})
}
