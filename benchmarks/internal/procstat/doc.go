// Package procstat reads the CPU time of processes from Linux's /proc, so that the mesh
// benchmark can charge each request with the CPU that every process on its path spent.
//
// [Parse] decodes one /proc/<pid>/stat line; [Process] and [Group] read the utime plus stime
// of a process, or of every process in a process group (a proxy with worker processes).
// Times in /proc are in clock ticks of [TicksPerSecond].
package procstat
