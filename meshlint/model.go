package meshlint

import (
	"slices"
	"time"
)

// Both inputs, Istio YAML and a sidecar's config dump, become the same model: the HTTP
// routes and upstream cluster policies the sidecar applies, each value with the place it
// comes from. The rules read only this model.

// loc is where a value sits.
type loc struct {
	resource string // "VirtualService/ns/name"
	path     string // "spec.http[0].timeout"
	file     string
	line     int
	// shared: the setting applies to several routes (an Envoy virtual host's retry
	// policy), which report it once.
	shared bool
}

// setting is one policy value. When set is false the value is the default the mesh
// applies, and at points where the field would be written.
type setting[T any] struct {
	v   T
	set bool
	at  loc
	// note says whose default an unset value is, for messages: "Istio's default".
	note string
}

// origin is " (Istio's default)" for a default value, "" for a value the input sets.
func (s setting[T]) origin() string {
	if s.set || s.note == "" {
		return ""
	}
	return " (" + s.note + ")"
}

// Mesh is the mesh's side of the check: the HTTP routes and upstream policies read from
// Istio resources ([Mesh.ReadYAML]) or from a sidecar's configuration ([ReadEnvoy]).
// A Mesh is not safe for concurrent use while it is being read into.
type Mesh struct {
	tables   [][]*route // ordered route tables: first match wins within one
	clusters []*cluster
	entries  []serviceEntry
	// attemptCounts is where the input makes the sidecar report x-envoy-attempt-count
	// in responses (an EnvoyFilter); its resource is empty when nothing does.
	attemptCounts loc
	live          bool // read from a config dump: every value is the effective one
}

// route is one HTTP route of the sidecar.
type route struct {
	at      loc      // the route itself, for example spec.http[0]
	hosts   []string // the hosts whose requests it takes (VirtualService hosts, virtual host domains)
	dests   []string // destination hosts
	matches []pathMatch
	// upstream is false for a redirect, direct response or delegate: it takes paths
	// away from later routes but sends nothing upstream itself.
	upstream bool
	// implicit is Istio's default route of a host no VirtualService routes.
	implicit bool

	timeout setting[time.Duration] // 0: none
	perTry  setting[time.Duration] // 0: none
	retries setting[int]           // Envoy's num_retries: tries are retries+1; 0: off
	retryOn setting[string]
	// attemptCounts: the sidecar adds x-envoy-attempt-count to this route's responses.
	attemptCounts bool

	// clusters are the upstream clusters (live mode), and hashHeader the header the
	// route hashes on for a ring-hash or Maglev cluster (live mode).
	clusters   []string
	hashHeader setting[string]
}

// pathMatch is one alternative of a route's match.
type pathMatch struct {
	path func(string) bool // nil: any path
	// post is false when the match's method condition excludes POST.
	post bool
	// conditional: the match also looks at headers, query or the source, so it takes
	// only some requests for its paths; later routes still see the others.
	conditional bool
}

// cluster is an upstream policy: one traffic policy block of a DestinationRule, or one
// cluster of the config dump. A setting a block leaves unset keeps set false.
type cluster struct {
	at       loc
	name     string // the Envoy cluster name (live mode)
	host     string
	external bool // a ServiceEntry host outside the mesh, or a known public API

	maxRequestsPerConnection setting[int] // 0: unlimited
	maxRequests              setting[int] // http2MaxRequests; 0: unlimited
	maxPending               setting[int] // http1MaxPendingRequests; 0: unlimited
	maxConnections           setting[int] // tcp.maxConnections; 0: unlimited

	hash       setting[string] // the hash key's kind: "httpHeaderName", "httpCookie", ...; empty: none
	hashHeader string          // the header, for httpHeaderName

	outlier     setting[bool]
	maxEjection setting[int] // percent
	minHealth   setting[int] // percent; 0 turns Envoy's panic mode off
	endpoints   int          // -1: unknown
}

// serviceEntry is what the check needs of a ServiceEntry.
type serviceEntry struct {
	at        loc
	hosts     []string
	hostAt    []loc
	external  bool
	http      bool // has a port the sidecar speaks HTTP on
	endpoints int  // -1: unknown
}

// carried returns the paths each route of one ordered table (a VirtualService's http
// list, an Envoy virtual host's routes) serves: a route serves a path that one of its
// matches takes with POST, unless an earlier route takes every request for it.
func carried(table []*route, paths []string, into map[*route][]string) {
	taken := make(map[string]bool, len(paths))
	for _, r := range table {
		for _, p := range paths {
			if taken[p] {
				continue
			}
			for _, m := range r.matches {
				if !m.post || (m.path != nil && !m.path(p)) {
					continue
				}
				if r.upstream && !slices.Contains(into[r], p) {
					into[r] = append(into[r], p)
				}
				if !m.conditional {
					taken[p] = true
				}
			}
		}
	}
}
