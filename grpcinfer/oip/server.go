package oip

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// Model is what a Go model implements to be served by a [Server].
//
// Infer receives inputs already decoded and checked against Metadata: every declared input is
// present once with its declared datatype and a shape that matches (a -1 dimension matches
// any size), and no undeclared input is present. It returns its outputs as typed tensors; the
// server checks them, keeps only the requested ones and encodes them raw when the request was
// raw. An error that carries a gRPC status (status.Error, [TensorError]) is returned to the
// client as is; a context error becomes CANCELLED or DEADLINE_EXCEEDED; any other error
// becomes INTERNAL. Infer may be called concurrently.
//
// A Model may also implement [Readier] (readiness that changes on its own), [StreamModel]
// (many responses per request over ModelStreamInfer) and [Loader] (work to do when
// RepositoryModelLoad and RepositoryModelUnload load and unload it).
type Model interface {
	Metadata() ModelMetadata
	Infer(ctx context.Context, req *InferRequest) (*InferResponse, error)
}

// Readier is implemented by a [Model] whose readiness can change (while it loads, for
// example). A Model without it is ready as soon as it is registered.
type Readier interface {
	Ready() bool
}

// ModelMetadata describes a model, as ModelMetadata answers.
type ModelMetadata struct {
	// Name is the model's name; requests address the model by it. Required.
	Name string
	// Versions lists the versions served; empty means any requested version is accepted. A
	// request that names no version is served as the last version listed (the latest, as
	// Triton's default version policy chooses), and the reply names that version.
	Versions []string
	// Platform names the framework or backend (free text, such as "go").
	Platform string
	// Inputs and Outputs describe the tensors. Required: at least one output.
	Inputs, Outputs []TensorMetadata
}

// TensorMetadata describes one input or output tensor.
type TensorMetadata struct {
	// Name is the tensor's name.
	Name string
	// Datatype is the element type.
	Datatype Datatype
	// Shape is the tensor's shape; -1 marks a dimension of any size.
	Shape []int64
}

// DefaultMaxStreamRequests is the default of [ServerConfig].MaxStreamRequests.
const DefaultMaxStreamRequests = 16

// ServerConfig configures a [Server]. Only Models is required.
type ServerConfig struct {
	// Name and Version answer ServerMetadata. Default name: "infermesh"; default version: "".
	Name, Version string
	// Extensions lists the protocol extensions claimed in ServerMetadata; nil means none.
	// The Server implements Triton's "model_repository" and "statistics" extensions and the
	// streaming RPC; claim what your clients look for.
	Extensions []string
	// Models are the models served, each under its Metadata().Name (unique). Each starts
	// loaded (ready); RepositoryModelUnload and RepositoryModelLoad change that.
	Models []Model
	// Ready, when set, gates ServerReady, ModelReady, ModelInfer and ModelStreamInfer: while
	// it returns false the server is live but not ready, a new ModelInfer call or
	// ModelStreamInfer stream is refused with UNAVAILABLE, and a new request on an open stream
	// is answered with an UNAVAILABLE error response; requests already running finish. Wire
	// it to the health gate ([github.com/infermesh/infermesh/grpcinfer.HealthGate.Serving]) so
	// that draining and loading also show here. nil means ready.
	Ready func() bool
	// Loading, when set, is called as RepositoryModelLoad starts loading a model, and the func
	// it returns is called when the load has ended (well or not). Wire it to
	// [github.com/infermesh/infermesh/grpcinfer.HealthGate.Loading] so that health reports
	// NOT_SERVING while a model loads. nil means loads do not touch health.
	Loading func() (done func())
	// MaxStreamRequests is how many requests of one ModelStreamInfer stream run at once (a
	// Triton client may send many over one stream); the stream's further requests wait for a
	// free slot, and that wait is their queue time in ModelStatistics. 0 means
	// DefaultMaxStreamRequests (16); 1 serves a stream's requests one after another.
	MaxStreamRequests int
}

// Server implements the inference.GRPCInferenceService for a set of [Model]s: the Open
// Inference Protocol (ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata,
// ModelInfer) and Triton's extensions (ModelStreamInfer, ModelStatistics, RepositoryIndex,
// RepositoryModelLoad, RepositoryModelUnload). It is safe for concurrent use.
type Server struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	cfg    ServerConfig
	models map[string]*servedModel
	names  []string // the model names in ServerConfig.Models order
}

type servedModel struct {
	model Model
	meta  ModelMetadata
	pb    *inferencepb.ModelMetadataResponse
	// inputs and outputs index the metadata by tensor name.
	inputs  map[string]TensorMetadata
	outputs map[string]TensorMetadata
	life    lifecycle
	// versions are the statistics keys in order: meta.Versions, or "" when it is empty.
	versions []string
	stats    map[string]*modelStats // fixed at NewServer, so read without a lock
}

var _ inferencepb.GRPCInferenceServiceServer = (*Server)(nil)

// NewServer checks cfg and the models' metadata and returns a Server. Errors name the model
// and the field at fault.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Name == "" {
		cfg.Name = "infermesh"
	}
	switch {
	case len(cfg.Models) == 0:
		return nil, errors.New("oip: ServerConfig.Models is empty")
	case cfg.MaxStreamRequests < 0:
		return nil, fmt.Errorf("oip: ServerConfig.MaxStreamRequests %d is negative", cfg.MaxStreamRequests)
	case cfg.MaxStreamRequests == 0:
		cfg.MaxStreamRequests = DefaultMaxStreamRequests
	}
	s := &Server{cfg: cfg, models: make(map[string]*servedModel, len(cfg.Models))}
	for i, m := range cfg.Models {
		sm, err := newServedModel(i, m)
		if err != nil {
			return nil, err
		}
		if _, dup := s.models[sm.meta.Name]; dup {
			return nil, fmt.Errorf("oip: ServerConfig.Models[%d]: model name %q is used twice", i, sm.meta.Name)
		}
		s.models[sm.meta.Name] = sm
		s.names = append(s.names, sm.meta.Name)
	}
	return s, nil
}

// newServedModel checks the metadata of cfg.Models[i] and indexes it.
func newServedModel(i int, m Model) (*servedModel, error) {
	if m == nil {
		return nil, fmt.Errorf("oip: ServerConfig.Models[%d] is nil", i)
	}
	meta := m.Metadata()
	if meta.Name == "" {
		return nil, fmt.Errorf("oip: ServerConfig.Models[%d]: Metadata().Name is empty", i)
	}
	if len(meta.Outputs) == 0 {
		return nil, fmt.Errorf("oip: model %q: Metadata().Outputs is empty", meta.Name)
	}
	sm := &servedModel{model: m, meta: meta, life: newLifecycle(), versions: meta.Versions, stats: map[string]*modelStats{}}
	var err error
	if sm.inputs, err = indexTensors(meta.Name, "Inputs", meta.Inputs); err != nil {
		return nil, err
	}
	if sm.outputs, err = indexTensors(meta.Name, "Outputs", meta.Outputs); err != nil {
		return nil, err
	}
	if len(sm.versions) == 0 {
		sm.versions = []string{""}
	}
	for _, v := range sm.versions {
		sm.stats[v] = &modelStats{}
	}
	sm.pb = &inferencepb.ModelMetadataResponse{
		Name: meta.Name, Versions: meta.Versions, Platform: meta.Platform,
		Inputs: metadataPB(meta.Inputs), Outputs: metadataPB(meta.Outputs),
	}
	return sm, nil
}

// indexTensors checks the metadata of a model's inputs or outputs (kind) and indexes it by name.
func indexTensors(model, kind string, list []TensorMetadata) (map[string]TensorMetadata, error) {
	index := make(map[string]TensorMetadata, len(list))
	for j, tm := range list {
		if tm.Name == "" {
			return nil, fmt.Errorf("oip: model %q: Metadata().%s[%d].Name is empty", model, kind, j)
		}
		if !tm.Datatype.Valid() {
			return nil, fmt.Errorf("oip: model %q: Metadata().%s[%d].Datatype %q is not a protocol datatype", model, kind, j, tm.Datatype)
		}
		for _, d := range tm.Shape {
			if d < -1 {
				return nil, fmt.Errorf("oip: model %q: Metadata().%s[%d].Shape %s has dimension %d (only -1 or >= 0)", model, kind, j, shapeString(tm.Shape), d)
			}
		}
		if _, dup := index[tm.Name]; dup {
			return nil, fmt.Errorf("oip: model %q: Metadata().%s has %q twice", model, kind, tm.Name)
		}
		index[tm.Name] = tm
	}
	return index, nil
}

func metadataPB(ts []TensorMetadata) []*inferencepb.ModelMetadataResponse_TensorMetadata {
	out := make([]*inferencepb.ModelMetadataResponse_TensorMetadata, len(ts))
	for i, t := range ts {
		out[i] = &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: string(t.Datatype), Shape: t.Shape}
	}
	return out
}

// Register registers the service on a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	inferencepb.RegisterGRPCInferenceServiceServer(r, s)
}

func (s *Server) serverReady() bool { return s.cfg.Ready == nil || s.cfg.Ready() }

// ready reports whether the model takes requests: loaded, and ready by its own account.
func (sm *servedModel) ready() bool {
	if st, _ := sm.life.get(); st != stateReady {
		return false
	}
	if r, ok := sm.model.(Readier); ok {
		return r.Ready()
	}
	return true
}

// defaultVersion is the version a request that names none is served as.
func (sm *servedModel) defaultVersion() string {
	if n := len(sm.meta.Versions); n > 0 {
		return sm.meta.Versions[n-1]
	}
	return ""
}

// statsFor returns the statistics of a version the model accepted.
func (sm *servedModel) statsFor(version string) *modelStats {
	if st, ok := sm.stats[version]; ok {
		return st
	}
	return sm.stats[""] // a model that lists no versions accepts any
}

// lookup finds a model and checks the version. It returns the version the request is served
// as: the one it names, or the model's default.
func (s *Server) lookup(name, version string) (*servedModel, string, error) {
	sm, ok := s.models[name]
	if !ok {
		return nil, "", status.Errorf(codes.NotFound, "oip: unknown model %q", echo(name))
	}
	if version == "" {
		return sm, sm.defaultVersion(), nil
	}
	if len(sm.meta.Versions) > 0 && !slices.Contains(sm.meta.Versions, version) {
		return nil, "", status.Errorf(codes.NotFound, "oip: model %q has no version %q", echo(name), echo(version))
	}
	return sm, version, nil
}

// ServerLive answers true: a server that can answer is live.
func (s *Server) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers true when ServerConfig.Ready allows and every model is ready, except
// models unloaded on purpose (RepositoryModelUnload).
func (s *Server) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	ready := s.serverReady()
	for _, sm := range s.models {
		st, _ := sm.life.get()
		ready = ready && (st == stateUnloaded || sm.ready())
	}
	return &inferencepb.ServerReadyResponse{Ready: ready}, nil
}

// ModelReady answers whether the server and the model are ready: false while the model loads
// or is unloaded. An unknown model or version is NOT_FOUND.
func (s *Server) ModelReady(_ context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	sm, _, err := s.lookup(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	return &inferencepb.ModelReadyResponse{Ready: s.serverReady() && sm.ready()}, nil
}

// ServerMetadata answers the configured name, version and extensions.
func (s *Server) ServerMetadata(context.Context, *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	return &inferencepb.ServerMetadataResponse{Name: s.cfg.Name, Version: s.cfg.Version, Extensions: s.cfg.Extensions}, nil
}

// ModelMetadata answers a model's metadata; an unknown model or version is NOT_FOUND.
func (s *Server) ModelMetadata(_ context.Context, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	sm, _, err := s.lookup(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	return sm.pb, nil
}

// ModelInfer decodes and checks the request, runs the model (its Infer, also for a
// [StreamModel]) and encodes its outputs. Unknown model or version: NOT_FOUND; not ready:
// UNAVAILABLE; malformed or mismatched tensors: INVALID_ARGUMENT naming the tensor.
func (s *Server) ModelInfer(ctx context.Context, m *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	var out *inferencepb.ModelInferResponse
	err := s.serve(ctx, m, time.Now(), false, func(resp *inferencepb.ModelInferResponse, _ bool) error {
		out = resp
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
