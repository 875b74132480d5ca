package chaos_test

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
	"github.com/infermesh/infermesh/transport"
)

// rig is a primary, an optional local fallback and an infermesh client, on loopback.
type rig struct {
	primary, local *llmtest.Server
	cfg            llmclient.Config
	tr             *llmclient.Transport
	sent           *attemptLog // the attempts infermesh sent to the primary
	clients        clients
	ids            atomic.Int64
}

// attemptLog is the base transport under infermesh: the default pooled one, which also
// numbers the attempts of each call in the order infermesh sends them (the callIDKey
// header says whose they are) and tells the upstream the number in attemptKey. The order
// in which a loaded server reads requests is not the order they were sent in: a request
// abandoned at a first-token timeout may be read after the retry that replaced it.
type attemptLog struct {
	next *http.Transport
	mu   sync.Mutex
	sent map[string]int // call id -> attempts sent
}

// attemptKey is the request header that numbers a call's attempts, from 1.
const attemptKey = "x-chaos-attempt"

func (l *attemptLog) RoundTrip(req *http.Request) (*http.Response, error) {
	if id := req.Header.Get(callIDKey); id != "" {
		l.mu.Lock()
		l.sent[id]++
		n := l.sent[id]
		l.mu.Unlock()
		req = req.Clone(req.Context())
		req.Header.Set(attemptKey, strconv.Itoa(n))
	}
	return l.next.RoundTrip(req)
}

func (l *attemptLog) CloseIdleConnections() { l.next.CloseIdleConnections() }

// attempts returns how many attempts of call id were sent.
func (l *attemptLog) attempts(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent[id]
}

// rigRoutes are the routes the matrix calls take.
var rigRoutes = []string{"chat", "responses"}

// primaryOptions shape the primary's answers: four chunks, 2 ms apart.
func primaryOptions() []llmtest.Option {
	return []llmtest.Option{llmtest.WithChunks(4, "ok "), llmtest.WithChunkInterval(llmtest.Fixed(2 * time.Millisecond))}
}

// shortRoutes gives the chat and Responses routes of cfg short limits, so that a call's
// retries fit in a few seconds: perTry for each attempt of a call that is not streamed,
// the stream policy for streams, short backoffs, retry hints up to 2 s honoured; then
// tune, if not nil, changes each route.
func shortRoutes(cfg *llmclient.Config, perTry time.Duration, stream llmclient.StreamPolicy, tune func(*llmclient.Route)) {
	for _, name := range rigRoutes {
		rt := cfg.Route(name)
		rt.Policy.PerTryTimeout = perTry
		rt.Policy.Backoff = breaker.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}
		rt.Policy.MaxRetryAfter = 2 * time.Second
		rt.Stream = stream
		if tune != nil {
			tune(rt)
		}
	}
}

// newRig starts a primary on loopback (and a local fallback, withFallback) and an
// infermesh client whose routes have the suite's short limits, changed by tune.
func newRig(t *testing.T, withFallback bool, tune func(*llmclient.Route)) *rig {
	t.Helper()
	r := &rig{primary: llmtest.NewServer(primaryOptions()...)}
	base, err := transport.New(transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r.sent = &attemptLog{next: base, sent: map[string]int{}}
	cfg := llmclient.Config{Base: r.sent, MaxResponseBytes: maxBody, MaxEventBytes: maxBody}
	shortRoutes(&cfg, 600*time.Millisecond, llmclient.StreamPolicy{FirstTokenTimeout: firstToken, IdleTimeout: idle}, tune)
	if withFallback {
		r.local = llmtest.NewServer(llmtest.WithChunks(2, "local "))
		ep, err := fallback.NewEndpoint(fallback.EndpointConfig{Name: "local", BaseURL: r.local.URL + "/v1",
			Model: "llama3.2", ForwardHeaders: []string{callIDKey}})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Fallback = fallback.Config{Targets: []fallback.Target{ep}}
	}
	tr, err := llmclient.NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg, r.tr = cfg, tr
	// openai-go keeps its default retries; its waits are short so that they fit in
	// the call deadline.
	r.clients = newClients(r.primary.URL, &http.Client{Transport: tagger{tr}}, option.WithMaxRetryDelay(20*time.Millisecond))
	return r
}

// close releases everything; afterwards no goroutine (and so no connection) may remain.
func (r *rig) close() {
	r.tr.CloseIdleConnections()
	r.primary.Close()
	if r.local != nil {
		r.local.Close()
	}
}

// attempts is the most upstream attempts the rig's route for ck makes per call.
func (r *rig) attempts(ck callKind) int {
	return r.cfg.Route(ck.route).Policy.MaxAttempts
}

// call makes one call of kind ck, tagged with a call id of its own, through the SDK
// picked by n (the two SDKs alternate within a burst).
func (r *rig) call(ck callKind, n int) (string, reply) {
	id := strconv.FormatInt(r.ids.Add(1), 10)
	ctx, cancel := context.WithTimeout(withCallID(context.Background(), id), callDeadline)
	defer cancel()
	do, sdk := ck.sdk(n)
	start := time.Now()
	res := do(ctx, r.clients)
	res.sdk, res.start, res.took = sdk, start, time.Since(start)
	return id, res
}

// burstOf makes burst concurrent calls of kind ck and returns them by call id.
func (r *rig) burstOf(ck callKind) map[string]reply {
	var mu sync.Mutex
	out := make(map[string]reply, burst)
	var wg sync.WaitGroup
	for n := range burst {
		wg.Go(func() {
			id, res := r.call(ck, n)
			mu.Lock()
			out[id] = res
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// verifyNone is goleak.VerifyNone with time for a loaded machine to end the goroutines
// of closed connections: goleak's own retries last under half a second, and a leak
// never ends however long it is given.
func verifyNone(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(leakWait); time.Now().Before(deadline) && goleak.Find() != nil; {
		time.Sleep(50 * time.Millisecond)
	}
	goleak.VerifyNone(t)
}

// leakWait bounds verifyNone's wait.
const leakWait = 10 * time.Second

func hostOf(u string) string {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return req.URL.Host
}
