// Package load drives one benchmark run: a client of a given kind sends a payload to a
// target from a number of concurrent workers, bounded in requests and in time, and records
// each request's latency in an HDR histogram.
//
// A run has a warm-up (every worker makes a few requests, which opens and warms the
// connections) and then a measured phase. [Spec.Mark] is called between the two, with every
// worker waiting, so that the caller can take CPU and connection snapshots exactly around
// the measured phase.
package load
