package oip

import (
	"context"
	"errors"
	"fmt"
	"slices"

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
	// Versions lists the versions served; empty means any requested version is accepted.
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

// ServerConfig configures a [Server]. Only Models is required.
type ServerConfig struct {
	// Name and Version answer ServerMetadata. Default name: "infermesh"; default version: "".
	Name, Version string
	// Extensions lists the protocol extensions claimed in ServerMetadata; nil means none.
	Extensions []string
	// Models are the models served, each under its Metadata().Name (unique).
	Models []Model
	// Ready, when set, gates ServerReady and ModelReady and ModelInfer: while it returns
	// false the server is live but not ready and inference fails with UNAVAILABLE. Wire it to
	// the health gate ([github.com/infermesh/infermesh/grpcinfer.HealthGate.Serving]) so
	// that draining also shows here. nil means ready.
	Ready func() bool
}

// Server implements the inference.GRPCInferenceService for a set of [Model]s. It is safe for
// concurrent use.
type Server struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer
	cfg    ServerConfig
	models map[string]*servedModel
}

type servedModel struct {
	model Model
	meta  ModelMetadata
	pb    *inferencepb.ModelMetadataResponse
	// inputs and outputs index the metadata by tensor name.
	inputs  map[string]TensorMetadata
	outputs map[string]TensorMetadata
}

var _ inferencepb.GRPCInferenceServiceServer = (*Server)(nil)

// NewServer checks cfg and the models' metadata and returns a Server. Errors name the model
// and the field at fault.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Name == "" {
		cfg.Name = "infermesh"
	}
	if len(cfg.Models) == 0 {
		return nil, errors.New("oip: ServerConfig.Models is empty")
	}
	s := &Server{cfg: cfg, models: make(map[string]*servedModel, len(cfg.Models))}
	for i, m := range cfg.Models {
		if m == nil {
			return nil, fmt.Errorf("oip: ServerConfig.Models[%d] is nil", i)
		}
		meta := m.Metadata()
		if meta.Name == "" {
			return nil, fmt.Errorf("oip: ServerConfig.Models[%d]: Metadata().Name is empty", i)
		}
		if _, dup := s.models[meta.Name]; dup {
			return nil, fmt.Errorf("oip: ServerConfig.Models[%d]: model name %q is used twice", i, meta.Name)
		}
		if len(meta.Outputs) == 0 {
			return nil, fmt.Errorf("oip: model %q: Metadata().Outputs is empty", meta.Name)
		}
		sm := &servedModel{model: m, meta: meta, inputs: map[string]TensorMetadata{}, outputs: map[string]TensorMetadata{}}
		for kind, list := range map[string][]TensorMetadata{"Inputs": meta.Inputs, "Outputs": meta.Outputs} {
			index := sm.inputs
			if kind == "Outputs" {
				index = sm.outputs
			}
			for j, tm := range list {
				if tm.Name == "" {
					return nil, fmt.Errorf("oip: model %q: Metadata().%s[%d].Name is empty", meta.Name, kind, j)
				}
				if !tm.Datatype.Valid() {
					return nil, fmt.Errorf("oip: model %q: Metadata().%s[%d].Datatype %q is not a protocol datatype", meta.Name, kind, j, tm.Datatype)
				}
				for _, d := range tm.Shape {
					if d < -1 {
						return nil, fmt.Errorf("oip: model %q: Metadata().%s[%d].Shape %s has dimension %d (only -1 or >= 0)", meta.Name, kind, j, shapeString(tm.Shape), d)
					}
				}
				if _, dup := index[tm.Name]; dup {
					return nil, fmt.Errorf("oip: model %q: Metadata().%s has %q twice", meta.Name, kind, tm.Name)
				}
				index[tm.Name] = tm
			}
		}
		sm.pb = &inferencepb.ModelMetadataResponse{
			Name: meta.Name, Versions: meta.Versions, Platform: meta.Platform,
			Inputs: metadataPB(meta.Inputs), Outputs: metadataPB(meta.Outputs),
		}
		s.models[meta.Name] = sm
	}
	return s, nil
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

func (sm *servedModel) ready() bool {
	if r, ok := sm.model.(Readier); ok {
		return r.Ready()
	}
	return true
}

// lookup finds a model and checks the version.
func (s *Server) lookup(name, version string) (*servedModel, error) {
	sm, ok := s.models[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "oip: unknown model %q", name)
	}
	if version != "" && len(sm.meta.Versions) > 0 && !slices.Contains(sm.meta.Versions, version) {
		return nil, status.Errorf(codes.NotFound, "oip: model %q has no version %q", name, version)
	}
	return sm, nil
}

// ServerLive answers true: a server that can answer is live.
func (s *Server) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers true when ServerConfig.Ready allows and every model is ready.
func (s *Server) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	ready := s.serverReady()
	for _, sm := range s.models {
		ready = ready && sm.ready()
	}
	return &inferencepb.ServerReadyResponse{Ready: ready}, nil
}

// ModelReady answers whether the server and the model are ready; an unknown model or version
// is NOT_FOUND.
func (s *Server) ModelReady(_ context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	sm, err := s.lookup(req.GetName(), req.GetVersion())
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
	sm, err := s.lookup(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	return sm.pb, nil
}

// ModelInfer decodes and checks the request, runs the model and encodes its outputs. Unknown
// model or version: NOT_FOUND; not ready: UNAVAILABLE; malformed or mismatched tensors:
// INVALID_ARGUMENT naming the tensor.
func (s *Server) ModelInfer(ctx context.Context, m *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	sm, err := s.lookup(m.GetModelName(), m.GetModelVersion())
	if err != nil {
		return nil, err
	}
	if !s.serverReady() || !sm.ready() {
		return nil, status.Errorf(codes.Unavailable, "oip: model %q is not ready", sm.meta.Name)
	}
	req, err := DecodeRequest(m)
	if err != nil {
		return nil, err
	}
	if err := sm.checkInputs(req.Inputs); err != nil {
		return nil, err
	}
	for _, o := range req.Outputs {
		if _, ok := sm.outputs[o.Name]; !ok {
			return nil, status.Errorf(codes.InvalidArgument, "oip: model %q has no output %q", sm.meta.Name, o.Name)
		}
	}
	resp, err := sm.model.Infer(ctx, req)
	if err != nil {
		return nil, modelError(sm.meta.Name, err)
	}
	if resp == nil {
		return nil, status.Errorf(codes.Internal, "oip: model %q returned no response", sm.meta.Name)
	}
	out := &InferResponse{
		ModelName: sm.meta.Name, ModelVersion: resp.ModelVersion, ID: req.ID,
		Parameters: resp.Parameters, Outputs: resp.Outputs, Raw: req.Raw || resp.Raw,
	}
	if out.ModelVersion == "" {
		out.ModelVersion = req.ModelVersion
	}
	if len(req.Outputs) > 0 {
		out.Outputs = make([]Tensor, 0, len(req.Outputs))
		for _, o := range req.Outputs {
			t, ok := resp.Output(o.Name)
			if !ok {
				return nil, status.Errorf(codes.Internal, "oip: model %q did not produce requested output %q", sm.meta.Name, o.Name)
			}
			out.Outputs = append(out.Outputs, t)
		}
	}
	pb, err := EncodeResponse(out)
	if err != nil {
		// The model produced a malformed tensor: that is the server's fault, not the caller's.
		return nil, status.Errorf(codes.Internal, "oip: model %q: %v", sm.meta.Name, err)
	}
	return pb, nil
}

// checkInputs compares decoded inputs with the model's declared inputs.
func (sm *servedModel) checkInputs(inputs []Tensor) error {
	if len(sm.meta.Inputs) == 0 {
		return nil
	}
	for i, t := range inputs {
		want, ok := sm.inputs[t.Name]
		if !ok {
			return &TensorError{Kind: "input", Index: i, Name: t.Name, Reason: fmt.Sprintf("is not an input of model %q", sm.meta.Name)}
		}
		if t.Datatype != want.Datatype {
			return &TensorError{Kind: "input", Index: i, Name: t.Name, Reason: fmt.Sprintf("has datatype %s but model %q takes %s", t.Datatype, sm.meta.Name, want.Datatype)}
		}
		if !shapeMatches(want.Shape, t.Shape) {
			return &TensorError{Kind: "input", Index: i, Name: t.Name, Reason: fmt.Sprintf("has shape %s but model %q takes %s", shapeString(t.Shape), sm.meta.Name, shapeString(want.Shape))}
		}
	}
	if len(inputs) != len(sm.meta.Inputs) {
		for _, want := range sm.meta.Inputs {
			if !slices.ContainsFunc(inputs, func(t Tensor) bool { return t.Name == want.Name }) {
				return &TensorError{Kind: "input", Name: want.Name, Reason: fmt.Sprintf("is required by model %q but missing", sm.meta.Name)}
			}
		}
	}
	return nil
}

func shapeMatches(want, got []int64) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if want[i] != -1 && want[i] != got[i] {
			return false
		}
	}
	return true
}

func modelError(model string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Internal, "oip: model %q: %v", model, err)
}
