package oip

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// Loader is implemented by a [Model] that has work to do when it is loaded or unloaded, such
// as reading weights or freeing them. RepositoryModelLoad calls Load (also to reload a loaded
// model); RepositoryModelUnload calls Unload. Both get the RPC's context and run once the
// requests running on the model have finished (new ones are refused meanwhile), so they never
// overlap Infer, InferStream or each other. A Model without Loader loads and unloads at once:
// only its readiness changes.
type Loader interface {
	Load(ctx context.Context) error
	Unload(ctx context.Context) error
}

// modelState is a model's place in its load cycle.
type modelState uint8

const (
	stateReady     modelState = iota // loaded, takes requests
	stateLoading                     // RepositoryModelLoad is running
	stateUnloading                   // RepositoryModelUnload waits for running requests
	stateUnloaded                    // unloaded on purpose
	stateFailed                      // a load or unload failed
)

// String returns the state as RepositoryIndex reports it (Triton's names).
func (st modelState) String() string {
	switch st {
	case stateReady:
		return "READY"
	case stateLoading:
		return "LOADING"
	case stateUnloading:
		return "UNLOADING"
	}
	return "UNAVAILABLE"
}

// lifecycle is a model's load state and the requests running on it.
type lifecycle struct {
	change chan struct{} // holds a token while a load or unload runs: one at a time

	mu       sync.Mutex
	state    modelState
	reason   string
	inflight int
	idle     chan struct{} // closed when inflight drops to zero during an unload
}

func newLifecycle() lifecycle { return lifecycle{change: make(chan struct{}, 1)} }

func (l *lifecycle) get() (modelState, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state, l.reason
}

func (l *lifecycle) set(st modelState, reason string) {
	l.mu.Lock()
	l.state, l.reason = st, reason
	l.mu.Unlock()
}

// acquire admits a request while the model is ready; release must follow.
func (l *lifecycle) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != stateReady {
		return false
	}
	l.inflight++
	return true
}

func (l *lifecycle) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if l.inflight == 0 && l.idle != nil {
		close(l.idle)
		l.idle = nil
	}
}

// begin waits for the model's turn to load or unload; end gives it back.
func (l *lifecycle) begin(ctx context.Context) error {
	select {
	case l.change <- struct{}{}:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (l *lifecycle) end() { <-l.change }

// drain moves the model to state to, which refuses new requests, and returns a channel
// closed once the running ones have finished, with the state to go back to if the change is
// abandoned.
func (l *lifecycle) drain(to modelState) (idle <-chan struct{}, prev modelState, prevReason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, prevReason = l.state, l.reason
	l.state, l.reason = to, ""
	ch := make(chan struct{})
	if l.inflight == 0 {
		close(ch)
	} else {
		l.idle = ch
	}
	return ch, prev, prevReason
}

// change runs a load or unload of the model: one at a time, once the model's running
// requests have finished (if ctx ends first, the model goes back to its state and keeps
// serving), then fn, the Loader's part, if the model has one. A failure leaves the model
// UNAVAILABLE; success leaves it in state done.
func (sm *servedModel) change(ctx context.Context, what string, during, done modelState, fn func(Loader) error) error {
	if err := sm.life.begin(ctx); err != nil {
		return err
	}
	defer sm.life.end()
	idle, prev, prevReason := sm.life.drain(during)
	select {
	case <-idle:
	case <-ctx.Done():
		sm.life.set(prev, prevReason)
		return status.Errorf(status.FromContextError(ctx.Err()).Code(), "oip: model %q: %s abandoned while requests were still running: %v", sm.meta.Name, what, ctx.Err())
	}
	if l, ok := sm.model.(Loader); ok {
		if err := fn(l); err != nil {
			sm.life.set(stateFailed, what+" failed: "+err.Error())
			return loaderError(sm.meta.Name, what, err)
		}
	}
	reason := ""
	if done == stateUnloaded {
		reason = "unloaded"
	}
	sm.life.set(done, reason)
	return nil
}

// loaderError turns a Loader's error into the status the client gets.
func loaderError(model, what string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if ctxErr := status.FromContextError(err); ctxErr.Code() != codes.Unknown {
		return status.Errorf(ctxErr.Code(), "oip: model %q: %s: %v", model, what, err)
	}
	return status.Errorf(codes.Internal, "oip: model %q: %s failed: %v", model, what, err)
}

// repositoryModel finds the model a RepositoryModelLoad or RepositoryModelUnload request
// names. The server has one repository, unnamed. A request whose model_name is empty is read
// in KServe's form, which carries the model's name in field 1 (Triton's repository_name).
func (s *Server) repositoryModel(rpc, repository, name string, params map[string]*inferencepb.ModelRepositoryParameter) (*servedModel, error) {
	if name == "" {
		name, repository = repository, ""
	}
	if repository != "" {
		return nil, status.Errorf(codes.NotFound, "oip: %s: no repository %q (this server has one, unnamed)", rpc, echo(repository))
	}
	if len(params) > 0 {
		keys := make([]string, 0, len(params))
		for k := range params {
			keys = append(keys, k)
		}
		return nil, status.Errorf(codes.InvalidArgument, "oip: %s: parameter %q is not supported", rpc, echo(slices.Min(keys)))
	}
	if name == "" {
		return nil, status.Errorf(codes.InvalidArgument, "oip: %s: model_name is empty", rpc)
	}
	sm, ok := s.models[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "oip: %s: unknown model %q", rpc, echo(name))
	}
	return sm, nil
}

// RepositoryModelLoad loads or reloads a model. While it loads, ModelReady answers false, the
// model's new requests are refused with UNAVAILABLE, and, through ServerConfig.Loading, health
// reports NOT_SERVING; a reload waits for the requests already running on the model to finish
// first (within the call's deadline: if it ends first, the model keeps serving and the call
// fails). A [Loader]'s error leaves the model
// UNAVAILABLE, with the error as the reason RepositoryIndex gives, and is returned (INTERNAL
// unless it carries a status). Unknown model: NOT_FOUND; a named repository: NOT_FOUND;
// parameters: INVALID_ARGUMENT (none is supported).
func (s *Server) RepositoryModelLoad(ctx context.Context, req *inferencepb.RepositoryModelLoadRequest) (*inferencepb.RepositoryModelLoadResponse, error) {
	sm, err := s.repositoryModel("RepositoryModelLoad", req.GetRepositoryName(), req.GetModelName(), req.GetParameters())
	if err != nil {
		return nil, err
	}
	if s.cfg.Loading != nil {
		done := s.cfg.Loading()
		defer done()
	}
	err = sm.change(ctx, "load", stateLoading, stateReady, func(l Loader) error { return l.Load(ctx) })
	if err != nil {
		return nil, err
	}
	return &inferencepb.RepositoryModelLoadResponse{ModelName: sm.meta.Name, IsLoaded: true}, nil
}

// RepositoryModelUnload unloads a model: new requests are refused with UNAVAILABLE at once,
// the running ones finish (for as long as the call's deadline allows: if it ends first, the
// model keeps serving and the call fails), then a [Loader]'s Unload runs. Unloading an
// unloaded model succeeds. Errors as RepositoryModelLoad.
func (s *Server) RepositoryModelUnload(ctx context.Context, req *inferencepb.RepositoryModelUnloadRequest) (*inferencepb.RepositoryModelUnloadResponse, error) {
	sm, err := s.repositoryModel("RepositoryModelUnload", req.GetRepositoryName(), req.GetModelName(), req.GetParameters())
	if err != nil {
		return nil, err
	}
	if st, _ := sm.life.get(); st == stateUnloaded {
		return &inferencepb.RepositoryModelUnloadResponse{ModelName: sm.meta.Name, IsUnloaded: true}, nil
	}
	err = sm.change(ctx, "unload", stateUnloading, stateUnloaded, func(l Loader) error { return l.Unload(ctx) })
	if err != nil {
		return nil, err
	}
	return &inferencepb.RepositoryModelUnloadResponse{ModelName: sm.meta.Name, IsUnloaded: true}, nil
}

// RepositoryIndex lists every model version with its state: "READY", "LOADING", "UNLOADING"
// or "UNAVAILABLE" (unloaded, a failed load, or a [Readier] model that reports not ready),
// and the reason. With ready set, only ready models are listed. A named repository is
// NOT_FOUND (the server has one, unnamed).
func (s *Server) RepositoryIndex(_ context.Context, req *inferencepb.RepositoryIndexRequest) (*inferencepb.RepositoryIndexResponse, error) {
	if r := req.GetRepositoryName(); r != "" {
		return nil, status.Errorf(codes.NotFound, "oip: RepositoryIndex: no repository %q (this server has one, unnamed)", echo(r))
	}
	out := &inferencepb.RepositoryIndexResponse{}
	for _, name := range s.names {
		sm := s.models[name]
		st, reason := sm.life.get()
		ready := sm.ready()
		if st == stateReady && !ready {
			st, reason = stateFailed, "the model reports that it is not ready"
		}
		if req.GetReady() && !ready {
			continue
		}
		for _, v := range sm.versions {
			out.Models = append(out.Models, &inferencepb.RepositoryIndexResponse_ModelIndex{Name: name, Version: v, State: st.String(), Reason: reason})
		}
	}
	return out, nil
}
