package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/infermesh/infermesh/benchmarks/internal/procstat"
)

// liveMembers returns the processes of group pgid that have not exited, from /proc. Zombies
// (exited, waiting for their parent to reap them) are left out: a worker orphaned by its
// leader is reaped by init, which may take its time.
func liveMembers(pgid int) ([]procstat.Stat, error) {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var live []procstat.Stat
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue // not a process
		}
		st, err := procstat.Reader{}.Process(pid)
		if errors.Is(err, procstat.ErrMalformed) {
			return nil, fmt.Errorf("process %d: %w", pid, err)
		}
		if err != nil {
			continue // ended and reaped since the listing
		}
		if st.PGRP == pgid && st.State != 'Z' && st.State != 'X' {
			live = append(live, st)
		}
	}
	return live, nil
}

// describe lists processes as "pid (comm) state".
func describe(procs []procstat.Stat) string {
	var b strings.Builder
	for i, st := range procs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d (%s) %c", st.PID, st.Comm, st.State)
	}
	return b.String()
}

// Constants of waitid(2) on Linux that package syscall does not name.
const (
	pPID      = 1 // idtype P_PID
	cldExited = 1 // si_code CLD_EXITED: si_status is the exit status
	cldDumped = 3 // si_code CLD_DUMPED: killed by signal si_status, with a core dump

	is64bit = int(^uint(0) >> 63) // 1 on 64-bit platforms, else 0
)

// siginfo is Linux's siginfo_t (128 bytes) as waitid fills it for a child (not on MIPS,
// which swaps errno and code).
type siginfo struct {
	signo, errno, code int32
	_                  [is64bit]int32 // the union after them is pointer-aligned
	pid                int32
	uid                uint32
	status             int32
	_                  [128 - (6+is64bit)*4]byte
}

// waitExited blocks until the child pid has exited, without reaping it (WNOWAIT), and says
// how it ended in the words of os.ProcessState: "exit status 3", "signal: killed".
func waitExited(pid int) string {
	var info siginfo
	var errno syscall.Errno
	for {
		_, _, errno = syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			break
		}
	}
	switch {
	case errno != 0:
		return "waitid: " + errno.Error()
	case info.code == cldExited:
		return "exit status " + strconv.Itoa(int(info.status))
	case info.code == cldDumped:
		return "signal: " + syscall.Signal(info.status).String() + " (core dumped)"
	default:
		return "signal: " + syscall.Signal(info.status).String()
	}
}
