package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// TicksPerSecond is the unit of utime and stime in /proc/<pid>/stat (USER_HZ). Linux fixes it
// at 100 for user space on every architecture Go supports, whatever the kernel's own HZ.
const TicksPerSecond = 100

// Stat holds the fields of /proc/<pid>/stat this package uses.
type Stat struct {
	// PID is the process id (field 1).
	PID int
	// Comm is the executable name without its parentheses (field 2); it may hold spaces and
	// parentheses.
	Comm string
	// State is the one-letter process state (field 3), such as 'R' or 'S'.
	State byte
	// PPID is the parent's process id (field 4).
	PPID int
	// PGRP is the process group id (field 5).
	PGRP int
	// UTime and STime are the user and system CPU time in clock ticks (fields 14 and 15).
	UTime, STime uint64
}

// CPU returns UTime plus STime as a duration.
func (s Stat) CPU() time.Duration {
	return TicksToDuration(s.UTime + s.STime)
}

// TicksToDuration converts clock ticks to a duration.
func TicksToDuration(ticks uint64) time.Duration {
	return time.Duration(ticks) * (time.Second / TicksPerSecond)
}

// ErrMalformed is wrapped by every error Parse returns.
var ErrMalformed = errors.New("procstat: malformed stat line")

// Parse decodes one /proc/<pid>/stat line. The command name is taken as everything between
// the first "(" and the last ")", since it may itself contain spaces and parentheses.
func Parse(line []byte) (Stat, error) {
	var s Stat
	open := bytes.IndexByte(line, '(')
	closing := bytes.LastIndexByte(line, ')')
	if open < 1 || closing < open {
		return s, fmt.Errorf("%w: no (comm)", ErrMalformed)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line[:open])))
	if err != nil || pid < 0 {
		return s, fmt.Errorf("%w: pid %q", ErrMalformed, bytes.TrimSpace(line[:open]))
	}
	s.PID = pid
	s.Comm = string(line[open+1 : closing])
	// After the comm: field 3 (state) is rest[0], field n is rest[n-3].
	rest := bytes.Fields(line[closing+1:])
	if len(rest) < 13 {
		return s, fmt.Errorf("%w: %d fields after comm, want at least 13", ErrMalformed, len(rest))
	}
	if len(rest[0]) != 1 {
		return s, fmt.Errorf("%w: state %q", ErrMalformed, rest[0])
	}
	s.State = rest[0][0]
	ints := []struct {
		field int
		dst   *int
	}{{4, &s.PPID}, {5, &s.PGRP}}
	for _, f := range ints {
		v, err := strconv.Atoi(string(rest[f.field-3]))
		if err != nil {
			return s, fmt.Errorf("%w: field %d %q", ErrMalformed, f.field, rest[f.field-3])
		}
		*f.dst = v
	}
	uints := []struct {
		field int
		dst   *uint64
	}{{14, &s.UTime}, {15, &s.STime}}
	for _, f := range uints {
		v, err := strconv.ParseUint(string(rest[f.field-3]), 10, 64)
		if err != nil {
			return s, fmt.Errorf("%w: field %d %q", ErrMalformed, f.field, rest[f.field-3])
		}
		*f.dst = v
	}
	return s, nil
}

// Reader reads /proc. The zero value reads the real /proc.
type Reader struct {
	// Root is the proc file system's mount point. Empty means "/proc".
	Root string
}

func (r Reader) root() string {
	if r.Root == "" {
		return "/proc"
	}
	return r.Root
}

// Process returns the stat of one process.
func (r Reader) Process(pid int) (Stat, error) {
	b, err := os.ReadFile(filepath.Join(r.root(), strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, err
	}
	return Parse(b)
}

// Group returns the summed CPU time of every live process whose process group is pgid, and
// how many processes that was. A process that exits between listing and reading is skipped.
// It fails when no process of the group is found.
func (r Reader) Group(pgid int) (time.Duration, int, error) {
	entries, err := os.ReadDir(r.root())
	if err != nil {
		return 0, 0, err
	}
	var ticks uint64
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		s, err := r.Process(pid)
		if err != nil {
			continue // gone, or not a process directory
		}
		if s.PGRP == pgid {
			ticks += s.UTime + s.STime
			n++
		}
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("procstat: no process in group %d", pgid)
	}
	return TicksToDuration(ticks), n, nil
}
