// Package proc starts and stops the mesh benchmark's child processes (the upstream and
// the proxies) by process id.
//
// Every child gets its own process group ([Start] sets Setpgid) and is killed by the kernel
// if the benchmark dies ([syscall.SysProcAttr.Pdeathsig]); [Process.Stop] signals the whole
// group, so a proxy's worker processes go with it. A [Set] tracks the children of one run so
// that an error or an interrupt stops all of them.
package proc
