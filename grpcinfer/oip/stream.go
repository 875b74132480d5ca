package oip

import (
	"context"
	"io"
	"maps"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
	"github.com/infermesh/infermesh/tracing"
)

// Parameters of streamed inference. The first two are Triton's; the third is this package's.
const (
	// FinalResponseParameter is the bool response parameter that ModelStreamInfer sets on
	// every response: true on the last response of a request.
	FinalResponseParameter = "triton_final_response"
	// EmptyFinalResponseParameter is the bool request parameter with which a client asks for
	// an empty response flagged final when the model's last response was not flagged so.
	EmptyFinalResponseParameter = "triton_enable_empty_final_response"
	// ErrorCodeParameter is the int64 parameter of the infer_response that comes with an
	// error_message: the gRPC status code of the failure (Triton sends only the message, which
	// [StreamClient] then takes as UNKNOWN).
	ErrorCodeParameter = "infermesh_error_code"
)

// Final reports whether the response carries [FinalResponseParameter] true: the last response
// of its request in a decoupled model's stream.
func (r *InferResponse) Final() bool {
	return r.Parameters[FinalResponseParameter].GetBoolParam()
}

// StreamModel is implemented by a [Model] that answers one request with any number of
// responses: a decoupled model in Triton's terms, such as a generator that streams tokens.
// ModelStreamInfer calls InferStream; ModelInfer still calls Infer, which should answer with
// everything at once.
//
// InferStream receives inputs checked as for Infer and calls send for each response as soon
// as it is ready; it returns when the request is over. Its error is reported as Infer's is,
// in the stream (see [Server.ModelStreamInfer]), also after responses have gone out. It may be
// called concurrently, and ctx ends when the client goes away.
type StreamModel interface {
	Model
	InferStream(ctx context.Context, req *InferRequest, send Sender) error
}

// Sender sends one response of a streamed request. The server checks and encodes it as it
// does Infer's response (requested outputs only, raw when the request was raw, the model's
// name and version, the request's id) and sets [FinalResponseParameter] to final: true marks
// the request's last response, after which Sender refuses more. The request is over when
// InferStream returns, whether or not a response was marked final. Sender returns an error
// (and the model should stop) for a malformed response (INTERNAL), after the final response
// or after InferStream returned, and when the stream is broken. It is safe for concurrent use.
type Sender func(resp *InferResponse, final bool) error

// ModelStreamInfer serves Triton's streaming RPC: every request of the stream is run as
// ModelInfer runs it, through a [StreamModel]'s InferStream when the model has one (each
// response it sends goes out at once) or through Infer otherwise (one response, flagged final).
// Up to ServerConfig.MaxStreamRequests requests of the stream run at once, so their responses
// may interleave; each carries the request's id.
//
// A request that fails is answered, as Triton does, by a response whose error_message says
// why, with an infer_response naming the model and the request's id, flagged final and
// carrying the gRPC code as [ErrorCodeParameter]; the stream stays open for other requests.
// The stream itself ends with OK once the client has closed its side and every request is
// over; it is refused with UNAVAILABLE at its start while the server is not ready (see
// ServerConfig.Ready), and if the client goes away the running requests are cancelled.
//
// Token usage that models report with grpcinfer.ReportUsage adds up over the stream and is
// sent in its trailers; on the server span the interceptors start, the responses' model and id
// and the time of the first response are recorded.
func (s *Server) ModelStreamInfer(stream inferencepb.GRPCInferenceService_ModelStreamInferServer) error {
	if !s.serverReady() {
		return status.Error(codes.Unavailable, "oip: server is not ready")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	w := &streamWriter{stream: stream, call: tracing.CallFromContext(ctx)}
	slots := make(chan struct{}, s.cfg.MaxStreamRequests)
	var running sync.WaitGroup
	defer running.Wait()
	defer cancel() // runs first: a stream that ends in error cancels its requests
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			running.Wait()
			return nil
		}
		if err != nil {
			return err
		}
		received := time.Now()
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		running.Go(func() {
			defer func() { <-slots }()
			s.serveStreamed(ctx, w, m, received)
		})
	}
}

// serveStreamed runs one request of a stream and answers a failure in the stream. A panic in
// the model becomes an INTERNAL error response: it runs on a goroutine of its own, which no
// recovery interceptor covers.
func (s *Server) serveStreamed(ctx context.Context, w *streamWriter, m *inferencepb.ModelInferRequest, received time.Time) {
	final := false
	emit := func(resp *inferencepb.ModelInferResponse, last bool) error {
		resp.Parameters = maps.Clone(resp.Parameters) // the model's map may be shared
		if resp.Parameters == nil {
			resp.Parameters = map[string]*inferencepb.InferParameter{}
		}
		resp.Parameters[FinalResponseParameter] = boolParam(last)
		final = last
		return w.send(&inferencepb.ModelStreamInferResponse{InferResponse: resp})
	}
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = status.Errorf(codes.Internal, "oip: model %q panicked", echo(m.GetModelName()))
			}
		}()
		return s.serve(ctx, m, received, true, emit)
	}()
	if err == nil || final {
		return // a failure after the final response has nothing left to answer
	}
	st := status.Convert(err)
	_ = w.send(&inferencepb.ModelStreamInferResponse{
		ErrorMessage: st.Message(),
		InferResponse: &inferencepb.ModelInferResponse{
			ModelName: m.GetModelName(), ModelVersion: m.GetModelVersion(), Id: m.GetId(),
			Parameters: map[string]*inferencepb.InferParameter{
				FinalResponseParameter: boolParam(true),
				ErrorCodeParameter:     {ParameterChoice: &inferencepb.InferParameter_Int64Param{Int64Param: int64(st.Code())}},
			},
		},
	})
}

func boolParam(v bool) *inferencepb.InferParameter {
	return &inferencepb.InferParameter{ParameterChoice: &inferencepb.InferParameter_BoolParam{BoolParam: v}}
}

// streamWriter serialises the sends of a stream's requests and records the stream's first
// response and the model and id of the responses on the server span.
type streamWriter struct {
	stream inferencepb.GRPCInferenceService_ModelStreamInferServer
	call   *tracing.Call // nil without tracing

	mu   sync.Mutex
	sent bool
}

func (w *streamWriter) send(r *inferencepb.ModelStreamInferResponse) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.stream.Send(r); err != nil {
		return err
	}
	if r.GetErrorMessage() != "" {
		return nil // an error response names what the request asked for, not what answered
	}
	if !w.sent {
		w.sent = true
		w.call.FirstChunk(time.Now())
	}
	w.call.Response(r.GetInferResponse().GetModelName(), r.GetInferResponse().GetId())
	return nil
}
