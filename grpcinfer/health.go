package grpcinfer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Drain defaults.
const (
	DefaultDrainGrace  = 5 * time.Second
	DefaultStopTimeout = 30 * time.Second
)

// ErrForcedStop is returned by [HealthGate.Drain] when in-flight calls did not finish within
// the stop timeout (or before ctx ended) and the server was stopped hard, cancelling them.
var ErrForcedStop = errors.New("grpcinfer: graceful stop did not finish in time; server stopped")

// HealthConfig configures a [HealthGate]. The zero value gives the documented defaults.
type HealthConfig struct {
	// Services are service names reported next to "" (the whole server), such as
	// "inference.GRPCInferenceService". All share the gate's one status. nil means "" only.
	Services []string
	// DrainGrace is how long Drain keeps the server running after reporting NOT_SERVING,
	// before it stops it, so that load balancers, the kubelet and the mesh notice and stop
	// sending new calls; calls in flight go on meanwhile (see Drain). 0 means 5s; negative
	// means no wait.
	DrainGrace time.Duration
	// StopTimeout is how long Drain lets in-flight calls finish (GracefulStop) before it
	// stops the server hard (Stop). 0 means 30s; negative means stop hard at once.
	StopTimeout time.Duration
}

// HealthGate is a grpc.health.v1 service whose status follows the application: NOT_SERVING
// from creation until [HealthGate.SetReady] says the model is loaded, NOT_SERVING while a
// model loads ([HealthGate.Loading]), and NOT_SERVING again for good once [HealthGate.Drain]
// starts. It is safe for concurrent use.
type HealthGate struct {
	cfg      HealthConfig
	srv      *grpc.Server
	hs       *health.Server
	stopping context.Context // cancelled when the server begins to stop; ends Watch streams
	stop     context.CancelFunc

	mu       sync.Mutex
	ready    bool
	loading  int // loads under way (Loading)
	draining bool

	drainOnce sync.Once
	drained   chan struct{}
	drainErr  error
}

// NewHealthGate registers the health service on s, reporting NOT_SERVING, and returns its
// gate. Call it before s.Serve.
func NewHealthGate(s *grpc.Server, cfg HealthConfig) (*HealthGate, error) {
	if s == nil {
		return nil, errors.New("grpcinfer: NewHealthGate: nil *grpc.Server")
	}
	for i, name := range cfg.Services {
		if name == "" {
			return nil, fmt.Errorf("grpcinfer: HealthConfig.Services[%d] is empty (the whole server, \"\", is always reported)", i)
		}
	}
	if cfg.DrainGrace == 0 {
		cfg.DrainGrace = DefaultDrainGrace
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	g := &HealthGate{cfg: cfg, srv: s, hs: health.NewServer(), drained: make(chan struct{})}
	g.stopping, g.stop = context.WithCancel(context.Background())
	g.setStatus(healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s, &gateHealth{Server: g.hs, stopping: g.stopping})
	return g, nil
}

func (g *HealthGate) setStatus(st healthpb.HealthCheckResponse_ServingStatus) {
	g.hs.SetServingStatus("", st)
	for _, name := range g.cfg.Services {
		g.hs.SetServingStatus(name, st)
	}
}

// SetReady reports SERVING (true) or NOT_SERVING (false): call it with true once the model
// is loaded and with false if it must be unloaded. While a load is under way
// ([HealthGate.Loading]) the gate stays NOT_SERVING and turns SERVING when the load ends.
// After Drain has started it does nothing.
func (g *HealthGate) SetReady(ready bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ready = ready
	g.update()
}

// Loading reports NOT_SERVING from now until the returned done func is called (later calls of
// done do nothing), whatever SetReady said: a model is being loaded. Loads may overlap; the
// gate serves again once every one is done, if SetReady(true) holds and no drain has started.
// Its method value fits [github.com/infermesh/infermesh/grpcinfer/oip.ServerConfig].Loading,
// which calls it around each RepositoryModelLoad.
func (g *HealthGate) Loading() (done func()) {
	g.mu.Lock()
	g.loading++
	g.update()
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.loading--
			g.update()
			g.mu.Unlock()
		})
	}
}

// serving is the gate's status; g.mu must be held.
func (g *HealthGate) serving() bool { return g.ready && g.loading == 0 && !g.draining }

// update reports the gate's status to the health service; g.mu must be held. Once the drain
// has started, the health service reports NOT_SERVING for good.
func (g *HealthGate) update() {
	if g.draining {
		return
	}
	if g.serving() {
		g.setStatus(healthpb.HealthCheckResponse_SERVING)
	} else {
		g.setStatus(healthpb.HealthCheckResponse_NOT_SERVING)
	}
}

// Serving reports whether the gate reports SERVING: ready, no load under way and not
// draining. Its method value fits
// [github.com/infermesh/infermesh/grpcinfer/oip.ServerConfig].Ready, which then refuses new
// inference calls with UNAVAILABLE whenever health says NOT_SERVING.
func (g *HealthGate) Serving() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.serving()
}

// Drain takes the server out of service and stops it:
//
//  1. health turns NOT_SERVING for good (health watchers are told at once), and so does
//     Serving: a service gated on it, such as the Open Inference Protocol server of package
//     oip with ServerConfig.Ready set to Serving, refuses new calls with UNAVAILABLE from now
//     on, which clients (and this package's client interceptors) retry elsewhere;
//  2. for DrainGrace the server keeps running, so that callers, load balancers and the mesh
//     notice: calls in flight go on, health checks are answered, new calls to gated services
//     are refused as above (other services still serve them);
//  3. health Watch streams end and GracefulStop refuses new calls of every service and waits
//     for in-flight ones, for at most StopTimeout;
//  4. if they have not finished, Stop cancels them and Drain returns [ErrForcedStop].
//
// If ctx ends first, Drain stops the server hard at once and returns an error wrapping
// ctx.Err(). Drain returns when the server has stopped; later calls wait for the first and
// return its result.
func (g *HealthGate) Drain(ctx context.Context) error {
	g.drainOnce.Do(func() {
		g.drainErr = g.drain(ctx)
		close(g.drained)
	})
	<-g.drained
	return g.drainErr
}

func (g *HealthGate) drain(ctx context.Context) error {
	g.mu.Lock()
	g.draining = true
	g.mu.Unlock()
	g.hs.Shutdown()

	hardStop := func(cause error) error {
		g.stop()
		g.srv.Stop()
		return cause
	}
	if g.cfg.DrainGrace > 0 {
		t := time.NewTimer(g.cfg.DrainGrace)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return hardStop(fmt.Errorf("grpcinfer: drain interrupted during the grace period: %w", ctx.Err()))
		}
	}
	if g.cfg.StopTimeout < 0 {
		return hardStop(nil)
	}
	g.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.srv.GracefulStop()
	}()
	t := time.NewTimer(g.cfg.StopTimeout)
	defer t.Stop()
	var err error
	select {
	case <-done:
		return nil
	case <-t.C:
		err = ErrForcedStop
	case <-ctx.Done():
		err = fmt.Errorf("%w: %w", ErrForcedStop, ctx.Err())
	}
	g.srv.Stop()
	<-done
	return err
}

// gateHealth ends Watch streams when the server begins to stop, so that GracefulStop does not
// wait for health watchers that would otherwise stay connected forever.
type gateHealth struct {
	*health.Server
	stopping context.Context
}

func (h *gateHealth) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stop := context.AfterFunc(h.stopping, cancel)
	defer stop()
	return h.Server.Watch(in, &watchStream{Health_WatchServer: stream, ctx: ctx})
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w *watchStream) Context() context.Context { return w.ctx }
