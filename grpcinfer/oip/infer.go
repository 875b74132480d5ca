package oip

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// emitFunc sends one encoded response of a request; final marks the request's last.
type emitFunc func(resp *inferencepb.ModelInferResponse, final bool) error

// inference is one request on its way through a model, with the durations ModelStatistics
// reports.
type inference struct {
	sm       *servedModel
	version  string // the version the request is served as
	req      *InferRequest
	emit     emitFunc
	streamed bool // ModelStreamInfer: the final flag goes out, InferStream is used

	received                    time.Time
	queue, input, infer, output time.Duration

	mu      sync.Mutex // serialises responses: a StreamModel may send from several goroutines
	inside  time.Duration
	final   bool  // the final response went out
	done    bool  // the model has returned
	sendErr error // the first response that could not be sent
}

// serve runs one request through its model: lookup, readiness, decoding and checks, the model,
// and the encoding of each response, which emit sends. It records the request in the model's
// statistics and returns its error as a gRPC status error.
func (s *Server) serve(ctx context.Context, m *inferencepb.ModelInferRequest, received time.Time, streamed bool, emit emitFunc) error {
	sm, version, err := s.lookup(m.GetModelName(), m.GetModelVersion())
	if err != nil {
		return err
	}
	inf := &inference{sm: sm, version: version, emit: emit, streamed: streamed, received: received}
	if !s.serverReady() || !sm.ready() || !sm.life.acquire() {
		err = status.Errorf(codes.Unavailable, "oip: model %q is not ready", echo(sm.meta.Name))
	} else {
		err = inf.run(ctx, m)
		sm.life.release()
	}
	sm.statsFor(version).record(inf, err)
	return err
}

// run decodes the request, runs the model and sends its responses.
func (inf *inference) run(ctx context.Context, m *inferencepb.ModelInferRequest) error {
	start := time.Now()
	inf.queue = start.Sub(inf.received)
	req, err := inf.sm.decode(m)
	if err != nil {
		return err
	}
	inf.req = req
	modelStart := time.Now()
	inf.input = modelStart.Sub(start)
	err = inf.runModel(ctx, req)
	inf.mu.Lock()
	defer inf.mu.Unlock()
	inf.done = true
	inf.infer = time.Since(modelStart) - inf.inside
	switch {
	case err != nil:
		return modelError(inf.sm.meta.Name, err)
	case inf.sendErr != nil:
		return inf.sendErr
	case inf.streamed && !inf.final && wantsEmptyFinal(m):
		// Triton's convention: a client that asks gets an empty response flagged final, so
		// that it knows the request is over even when the model's last response was not.
		return inf.emit(&inferencepb.ModelInferResponse{ModelName: inf.sm.meta.Name, ModelVersion: inf.version, Id: req.ID}, true)
	}
	return nil
}

// runModel calls the model: InferStream for a streamed request to a [StreamModel], Infer
// otherwise, whose one response is the final one.
func (inf *inference) runModel(ctx context.Context, req *InferRequest) error {
	if sm, ok := inf.sm.model.(StreamModel); ok && inf.streamed {
		return sm.InferStream(ctx, req, inf.respond)
	}
	resp, err := inf.sm.model.Infer(ctx, req)
	if err != nil {
		return err
	}
	return inf.respond(resp, true)
}

// respond checks, encodes and sends one response of the model: it is the [Sender] a
// StreamModel gets.
func (inf *inference) respond(resp *InferResponse, final bool) error {
	start := time.Now()
	inf.mu.Lock()
	defer inf.mu.Unlock()
	switch {
	case inf.done:
		return status.Errorf(codes.Internal, "oip: model %q sent a response after InferStream returned", inf.sm.meta.Name)
	case inf.final:
		return status.Errorf(codes.Internal, "oip: model %q sent a response after its final one", inf.sm.meta.Name)
	case inf.sendErr != nil:
		return inf.sendErr
	}
	m, err := inf.sm.encode(inf.req, inf.version, resp)
	inf.output += time.Since(start)
	if err == nil {
		err = inf.emit(m, final)
	}
	inf.inside += time.Since(start)
	inf.final = final
	inf.sendErr = err
	return err
}

// wantsEmptyFinal reports whether a request carries Triton's
// "triton_enable_empty_final_response": true.
func wantsEmptyFinal(m *inferencepb.ModelInferRequest) bool {
	return m.GetParameters()[EmptyFinalResponseParameter].GetBoolParam()
}

// decode decodes a request and checks it against the model's metadata.
func (sm *servedModel) decode(m *inferencepb.ModelInferRequest) (*InferRequest, error) {
	req, err := DecodeRequest(m)
	if err != nil {
		return nil, err
	}
	if err := sm.checkInputs(req.Inputs); err != nil {
		return nil, err
	}
	for _, o := range req.Outputs {
		if _, ok := sm.outputs[o.Name]; !ok {
			return nil, status.Errorf(codes.InvalidArgument, "oip: model %q has no output %q", echo(sm.meta.Name), echo(o.Name))
		}
	}
	return req, nil
}

// encode checks a model's response and encodes it for the request: only the requested
// outputs, raw when the request was raw, with the model's name and the version that ran.
func (sm *servedModel) encode(req *InferRequest, version string, resp *InferResponse) (*inferencepb.ModelInferResponse, error) {
	if resp == nil {
		return nil, status.Errorf(codes.Internal, "oip: model %q returned no response", sm.meta.Name)
	}
	out := &InferResponse{
		ModelName: sm.meta.Name, ModelVersion: cmp.Or(resp.ModelVersion, version), ID: req.ID,
		Parameters: resp.Parameters, Outputs: resp.Outputs, Raw: req.Raw || resp.Raw,
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

// modelError turns a model's error into the status the client gets.
func modelError(model string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Internal, "oip: model %q: %v", model, err)
}
