package llmclient

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/infermesh/infermesh/internal/llmwire"
	"github.com/infermesh/infermesh/steer"
)

// Steering sends each call to one of several named backends instead of the host the
// caller's SDK was configured with (the SDK's base URL stays what the user set):
// weighted canaries and provider migrations (OpenAI to Azure OpenAI, an external API
// to a self-hosted vLLM), header rules that pin testers to a version, session affinity,
// and a healthy-only choice. Package steer makes the choice; see its documentation.
type Steering struct {
	// Backends are the named upstreams; at least one, names unique.
	Backends []Backend
	// Rules send calls whose header matches to one backend, before affinity and the
	// split (for example x-canary-user: true to the new version).
	Rules []steer.Rule
	// Balance chooses among the backends a rule or a session does not decide:
	// steer.Weighted (the zero value, a smooth weighted split) or steer.LeastLoaded.
	Balance steer.Balance
	// AffinityHeader names the session header whose calls stay on one backend
	// (consistent hashing with bounded loads); "" means "x-session-id",
	// steer.NoAffinity switches affinity off. The header is forwarded unchanged, so
	// the mesh's own consistentHash keeps working behind the client.
	AffinityHeader string
	// LoadFactor bounds a session backend's share of the calls in flight; 0 means
	// steer.DefaultLoadFactor (1.25).
	LoadFactor float64
	// MinHealthyPercent is the share of healthy backends below which the client stops
	// skipping backends whose breaker is open (Istio's minHealthPercent); 0 means
	// never stop skipping.
	MinHealthyPercent float64
}

// Backend is one OpenAI-compatible upstream of [Steering].
type Backend struct {
	// Name identifies the backend in weights, rules, breaker names, the
	// infermesh.backend span attribute and the X-Infermesh-Backend response header.
	Name string
	// BaseURL is the API base with its version, as SDKs take it, for example
	// "https://api.openai.com/v1" or "http://vllm.models.svc:8000/v1"; for Azure, the
	// resource's endpoint ("https://my-resource.openai.azure.com").
	BaseURL string
	// APIKey authenticates with the backend: "Authorization: Bearer <key>", or
	// "api-key" for Azure. The caller's credentials are dropped then. When empty, the
	// caller's credentials are kept, but only for a backend on the host the caller
	// addressed: credentials never go to another host.
	APIKey string
	// Model replaces the request's JSON "model" field; "" keeps the caller's.
	Model string
	// Weight is the backend's share of the weighted split; 0 means only rules send
	// calls to it. Change it at run time with [Transport.SetWeights].
	Weight int
	// Azure, when set, makes this an Azure OpenAI backend.
	Azure *Azure
	// Header is added to every request to the backend (for example
	// OpenAI-Organization).
	Header http.Header
}

// Azure addresses an Azure OpenAI deployment: the path becomes
// /openai/deployments/{Deployment}/... with ?api-version=APIVersion, and the key goes in
// the api-key header.
type Azure struct {
	Deployment, APIVersion string
}

// Hedge sends a call that has not reached its first output after a delay to a second
// backend too; the first to commit wins and the other is cancelled at once. It needs
// Steering with at least two backends. The delay is a quantile of the first backend's
// recent times to first chunk. Hedges and retries share the route's retry budget.
type Hedge struct {
	// Quantile of the recent times to first chunk after which to hedge; 0 means
	// steer.DefaultHedgeQuantile (0.95).
	Quantile float64
	// MinDelay and MaxDelay clamp the delay; 0 means steer.DefaultHedgeMinDelay
	// (100 ms) and steer.DefaultHedgeMaxDelay (10 s). MaxDelay is also the delay while
	// a backend has too few samples.
	MinDelay, MaxDelay time.Duration
}

// HeaderBackend names the backend that served a steered call.
const HeaderBackend = "X-Infermesh-Backend"

// steering is a validated Steering.
type steering struct {
	router   *steer.Router
	backends map[string]*backend
	keys     []string // the backends' API keys, scrubbed from errors like the caller's
}

// backend is a validated Backend.
type backend struct {
	Backend
	base *url.URL
}

func newSteering(s *Steering) (*steering, error) {
	if s == nil {
		return nil, nil
	}
	st := &steering{backends: make(map[string]*backend, len(s.Backends))}
	sb := make([]steer.Backend, 0, len(s.Backends))
	for i, b := range s.Backends {
		u, err := url.Parse(b.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("llmclient: Steering.Backends[%d].BaseURL %q is not an absolute http(s) URL", i, b.BaseURL)
		}
		if b.Azure != nil && (b.Azure.Deployment == "" || b.Azure.APIVersion == "") {
			return nil, fmt.Errorf("llmclient: Steering.Backends[%d] (%q): Azure needs a Deployment and an APIVersion", i, b.Name)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		st.backends[b.Name] = &backend{Backend: b, base: u}
		if b.APIKey != "" {
			st.keys = append(st.keys, b.APIKey)
		}
		sb = append(sb, steer.Backend{Name: b.Name, Weight: b.Weight})
	}
	r, err := steer.New(steer.Config{Backends: sb, Rules: s.Rules, Balance: s.Balance, AffinityHeader: s.AffinityHeader,
		LoadFactor: s.LoadFactor, MinHealthyPercent: s.MinHealthyPercent})
	if err != nil {
		return nil, fmt.Errorf("llmclient: Steering: %w", err)
	}
	st.router = r
	return st, nil
}

// target is where one run of a call goes: the caller's own URL, or a backend's, with
// the body and headers for it.
type target struct {
	name     string // the backend's; "" for the caller's own upstream
	key      string // the breaker's key: the backend's name, or the host
	url      *url.URL
	header   http.Header
	orig     []byte // the body before include_usage
	body     []byte // what attempts send
	injected bool   // include_usage was added by infermesh
	host     string // for the strict-server memory
}

// ownTarget is the upstream the caller addressed.
func (c *call) ownTarget() *target {
	tg := &target{key: c.host, url: c.req.URL, header: c.req.Header, orig: c.orig, body: c.orig, host: c.host}
	c.prepare(tg, c.info.Model)
	return tg
}

// backendTarget rewrites the call for backend b: its URL (Azure's deployment path and
// api-version), its credentials (never the caller's to another host), its model.
func (c *call) backendTarget(b *backend) *target {
	u := *b.base
	op := llmwire.OperationPath(c.req.URL.Path)
	if b.Azure != nil {
		u.Path += "/openai/deployments/" + url.PathEscape(b.Azure.Deployment) + op
		q := c.req.URL.Query()
		q.Set("api-version", b.Azure.APIVersion)
		u.RawQuery = q.Encode()
	} else {
		u.Path += op
		u.RawQuery = c.req.URL.RawQuery
	}
	u.RawPath = ""
	h := headerCopy(c.req.Header, 2+len(b.Header))
	if b.APIKey != "" || u.Host != c.req.URL.Host {
		c.t.cfg.creds.Strip(h)
	}
	switch {
	case b.APIKey != "" && b.Azure != nil:
		h.Set("Api-Key", b.APIKey)
	case b.APIKey != "":
		h.Set("Authorization", "Bearer "+b.APIKey)
	}
	for k, vs := range b.Header {
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	tg := &target{name: b.Name, key: b.Name, url: &u, header: h, orig: c.orig, body: c.orig, host: u.Host}
	model := c.info.Model
	if b.Model != "" && len(c.orig) > 0 {
		if body, err := llmwire.WithModel(c.orig, b.Model); err == nil {
			tg.orig, tg.body, model = body, body, b.Model
		}
	}
	c.prepare(tg, model)
	return tg
}

// prepare adds include_usage to a streamed body (so that the stream's usage can be
// traced) unless the route or the host says not to, and the model header the mesh
// can see.
func (c *call) prepare(tg *target, model string) {
	if name := c.t.cfg.modelHeader; name != "" && model != "" {
		if tg.name == "" {
			tg.header = headerCopy(tg.header, 1)
		}
		tg.header.Set(name, model)
	}
	if !c.info.Stream || c.info.IncludeUsage || (c.op != llmwire.OpChat && c.op != llmwire.OpCompletions) ||
		c.route.Stream.NoUsageRequest {
		return
	}
	if _, strict := c.t.noUsage.Load(tg.host); strict {
		return
	}
	if b, err := llmwire.WithIncludeUsage(tg.orig); err == nil {
		tg.body, tg.injected = b, true
	}
}
