package meshlint

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/infermesh/infermesh/llmclient"
)

// Options configures [Check].
type Options struct {
	// App is the application's policy. nil means infermesh's defaults,
	// llmclient.DefaultDescription().
	App *llmclient.Description
	// AppName names the application's side in findings: "App/<AppName>". Empty means
	// the base name of AppFile, else "defaults" when App is nil and "app" otherwise.
	AppName string
	// AppFile is the file App was read from, for the location of findings on the
	// application's side; empty means none.
	AppFile string
	// LLMHosts are more hosts that serve LLM or inference calls (-llm-host), beyond those
	// the check finds itself (see the package documentation). "*.example.com"
	// wildcards are allowed.
	LLMHosts []string
	// AttemptCountInResponse says that the sidecar adds x-envoy-attempt-count to
	// responses (for example through an EnvoyFilter the input does not hold), so
	// infermesh can see the mesh's retries. Istio does not do so by default.
	AttemptCountInResponse bool
}

// The paths of OpenAI-compatible LLM APIs the checks probe routes with. All are POSTs;
// the first three stream.
var (
	streamPaths = []string{"/v1/chat/completions", "/v1/completions", "/v1/responses"}
	llmPaths    = append(slices.Clone(streamPaths), "/v1/embeddings")
)

// checker holds one run of the rules.
type checker struct {
	app      llmclient.Description
	appAt    func(path string) loc
	mesh     *Mesh
	llmHosts []string
	paths    []string // llmPaths and the app's own route prefixes
	carries  map[*route][]string
	attempts loc // where the sidecar is made to report attempt counts; resource "" when not
}

// Check compares the application's policy with the mesh's and returns the findings,
// sorted by input position. It fails only for an invalid opts.App. It does not change m,
// so checks of one Mesh may run concurrently.
func Check(m *Mesh, opts Options) ([]Finding, error) {
	c := &checker{mesh: m, carries: map[*route][]string{}}
	appName := "defaults"
	if opts.App != nil {
		if err := validateApp(*opts.App); err != nil {
			return nil, fmt.Errorf("meshlint: Options.App: %w", err)
		}
		c.app, appName = *opts.App, "app"
	} else {
		c.app = llmclient.DefaultDescription()
	}
	if opts.AppFile != "" {
		appName = filepath.Base(opts.AppFile)
	}
	if opts.AppName != "" {
		appName = opts.AppName
	}
	c.appAt = func(path string) loc { return loc{resource: "App/" + appName, path: path, file: opts.AppFile} }
	c.attempts = m.attemptCounts
	if opts.AttemptCountInResponse {
		c.attempts = loc{resource: "Options", path: "AttemptCountInResponse"}
	}
	c.paths = slices.Clone(llmPaths)
	for _, r := range c.app.Routes {
		if r.Prefix != "" && !slices.Contains(c.paths, r.Prefix) {
			c.paths = append(c.paths, r.Prefix)
		}
	}
	c.llmHosts = c.findLLMHosts(opts.LLMHosts)
	tables := append(slices.Clone(m.tables), c.implicitRoutes()...)
	for _, t := range tables {
		carried(t, c.paths, c.carries)
	}

	var fs []Finding
	for _, t := range tables {
		for _, r := range t {
			if !r.upstream || len(c.carries[r]) == 0 || !c.llmRoute(r) {
				continue
			}
			fs = append(fs, c.streamTimeout(r)...)
			fs = append(fs, c.timeoutOrder(r)...)
			fs = append(fs, c.retryAmplification(r)...)
			fs = append(fs, c.retryNonIdempotent(r)...)
		}
	}
	llmClusters := c.llmClusters(tables)
	for _, cl := range llmClusters {
		fs = append(fs, c.connChurn(cl)...)
		fs = append(fs, c.poolOverflow(cl)...)
		fs = append(fs, c.outlierEjection(cl)...)
	}
	fs = append(fs, c.affinity(tables, llmClusters)...)
	fs = worstPerSetting(fs)
	sortFindings(fs)
	return fs, nil
}

// worstPerSetting reports a setting several routes share (an Envoy virtual host's retry
// policy) once per rule, for the route it hurts most.
func worstPerSetting(fs []Finding) []Finding {
	type key struct{ rule, resource, path string }
	at := map[key]int{}
	out := fs[:0]
	for _, f := range fs {
		if !f.shared {
			out = append(out, f)
			continue
		}
		k := key{f.Rule, f.Resource, f.Path}
		if i, ok := at[k]; ok {
			if f.Severity.rank() < out[i].Severity.rank() {
				out[i] = f
			}
			continue
		}
		at[k] = len(out)
		out = append(out, f)
	}
	return out
}

// findLLMHosts decides which hosts serve LLM or inference calls: those named in extra
// (-llm-host), the public LLM APIs, and the hosts and destinations of every route with
// a match written for an LLM path (one that takes an LLM path but not "/").
func (c *checker) findLLMHosts(extra []string) []string {
	hosts := slices.Clone(publicLLMHosts)
	for _, h := range extra {
		hosts = append(hosts, strings.ToLower(strings.TrimSpace(h)))
	}
	for _, t := range c.mesh.tables {
		for _, r := range t {
			if !c.explicitLLMMatch(r) {
				continue
			}
			for _, h := range append(slices.Clone(r.hosts), r.dests...) {
				if h != "*" && h != "" && !slices.Contains(hosts, h) {
					hosts = append(hosts, h)
				}
			}
		}
	}
	return hosts
}

func (c *checker) explicitLLMMatch(r *route) bool {
	for _, m := range r.matches {
		if m.path == nil || m.path("/") {
			continue
		}
		for _, p := range c.paths {
			if m.path(p) {
				return true
			}
		}
	}
	return false
}

// llmRoute reports whether r serves an LLM host. A catch-all host ("*", a gateway's or
// the sidecar's pass-through) does not make a route an LLM route by itself.
func (c *checker) llmRoute(r *route) bool {
	for _, hs := range [][]string{r.hosts, r.dests} {
		for _, h := range hs {
			if h != "*" && anyOverlap([]string{h}, c.llmHosts) {
				return true
			}
		}
	}
	return false
}

// implicitRoutes gives each LLM host of a ServiceEntry that the sidecar speaks HTTP to,
// and that no VirtualService routes, the route Istio builds for it: every path, no
// timeout, Istio's default retries. A config dump already holds these routes.
func (c *checker) implicitRoutes() [][]*route {
	if c.mesh.live {
		return nil
	}
	var out [][]*route
	for _, e := range c.mesh.entries {
		if !e.http {
			continue
		}
		for i, h := range e.hosts {
			if !anyOverlap([]string{h}, c.llmHosts) || c.routed(h) {
				continue
			}
			at := e.hostAt[i]
			out = append(out, []*route{{
				at: at, hosts: []string{h}, dests: []string{h}, matches: []pathMatch{{post: true}},
				upstream: true, implicit: true,
				timeout: setting[time.Duration]{at: at}, perTry: setting[time.Duration]{at: at},
				retries: setting[int]{v: istioRetries, at: at, note: istioRetryNote},
				retryOn: setting[string]{v: istioRetryOn, at: at, note: istioRetryNote},
			}})
		}
	}
	return out
}

// routed reports whether a VirtualService routes requests for host.
func (c *checker) routed(host string) bool {
	for _, t := range c.mesh.tables {
		if len(t) > 0 && anyOverlap(t[0].hosts, []string{host}) {
			return true
		}
	}
	return false
}

// llmClusters returns the upstream policies of LLM hosts, marking those of hosts outside
// the mesh, with the endpoint counts ServiceEntries give.
func (c *checker) llmClusters(tables [][]*route) []*cluster {
	dests := map[string]bool{}
	for _, t := range tables {
		for _, r := range t {
			if len(c.carries[r]) > 0 && c.llmRoute(r) {
				for _, cl := range r.clusters {
					dests[cl] = true
				}
			}
		}
	}
	var out []*cluster
	for _, orig := range c.mesh.clusters {
		if !dests[orig.name] && !anyOverlap([]string{orig.host}, c.llmHosts) {
			continue
		}
		cl := new(cluster)
		*cl = *orig // the check fills in what it learns; the Mesh stays as read
		if anyOverlap([]string{cl.host}, publicLLMHosts) {
			cl.external = true
		}
		for _, e := range c.mesh.entries {
			if anyOverlap(e.hosts, []string{cl.host}) {
				cl.external = cl.external || e.external
				if cl.endpoints < 0 {
					cl.endpoints = e.endpoints
				}
			}
		}
		out = append(out, cl)
	}
	return out
}

// finding builds a finding at a setting's location.
func finding(rule string, sev Severity, at loc, msg, fix string) Finding {
	return Finding{Rule: rule, Severity: sev, Resource: at.resource, Path: at.path, Message: msg, Fix: fix, File: at.file, Line: at.line, shared: at.shared}
}

// dur writes a duration as Istio does, in seconds: "300s".
func dur[D ~int64](d D) string { return llmclient.Duration(d).String() }
