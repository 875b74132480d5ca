// Package proc starts and stops the mesh benchmark's child processes (the upstream and
// the proxies) by process id. It works on Linux only (not on MIPS, whose siginfo_t differs).
//
// Every child gets its own process group ([Start] sets Setpgid) and is killed by the kernel
// if the benchmark dies ([syscall.SysProcAttr.Pdeathsig]); [Process.Stop] signals the whole
// group, so a proxy's worker processes go with it, and returns only once no process of the
// group is left running. Until Stop, an exited child is not reaped, so that its group id
// cannot pass to another process group that Stop would then signal. A [Set] tracks the
// children of one run so that an error or an interrupt stops all of them. [StartPiped] starts
// a child that talks over its standard input and output and waits for its ready line.
package proc
