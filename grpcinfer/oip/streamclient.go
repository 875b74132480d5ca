package oip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
	"github.com/infermesh/infermesh/tracing"
)

// Defaults of [StreamConfig], those of infermesh's OpenAI-compatible streams.
const (
	DefaultFirstResponseTimeout = 150 * time.Second
	DefaultIdleTimeout          = 60 * time.Second
)

// StreamConfig configures a [StreamClient]. The zero value gives the documented defaults.
type StreamConfig struct {
	// FirstResponseTimeout bounds each attempt's wait for its first response, from the
	// opening of the stream (a model that thinks before its first token is not idle: give it
	// time here). Until a response has reached the caller, its expiry is retried. 0 means
	// DefaultFirstResponseTimeout (150 s); breaker.NoTimeout switches it off.
	FirstResponseTimeout time.Duration
	// IdleTimeout bounds the wait for each later response, counted only while the caller
	// waits in [InferStream.Recv]. 0 means DefaultIdleTimeout (60 s); breaker.NoTimeout
	// switches it off.
	IdleTimeout time.Duration
	// MaxStreamDuration bounds a whole streamed inference, retries included, as a deadline
	// the server sees too. 0 (the default) means no bound: a long generation that keeps
	// producing is never cut.
	MaxStreamDuration time.Duration

	// Policy is the circuit breaker and retry policy of the streams (one breaker.Policy per
	// StreamClient, so give each upstream its own client). The zero value gives the breaker
	// package's defaults: 2 attempts, full-jitter backoff from 2 s, a 20% retry budget. Its
	// Timeout and PerTryTimeout are not used: FirstResponseTimeout bounds each attempt and the
	// caller's context the whole. A failure is retried only before the first response reached
	// the caller, by opening a new stream and sending the request again.
	Policy breaker.Config

	// Tracing records one span per streamed inference (kind CLIENT, "{operation} {model}"),
	// with a child span per attempt, retries, the breaker state, the time to the first
	// response, the responses' model and id, and the token usage the server sent in its
	// trailers (grpcinfer.UsageFromTrailer); the trace context goes to the server in the
	// request metadata. nil means no tracing. Set it here or on the connection's
	// interceptors (grpcinfer.ClientConfig.Tracing), not both, or each stream is traced twice.
	Tracing *tracing.Instrumenter
	// TraceOperation and TraceProvider are gen_ai.operation.name and gen_ai.provider.name of
	// the spans. "" means grpcinfer.DefaultTraceOperation ("infer") and
	// grpcinfer.DefaultTraceProvider ("oip").
	TraceOperation, TraceProvider string
}

// StreamClient runs inferences over ModelStreamInfer, the streaming RPC of Triton and of this
// package's [Server], with the streaming-safe policy of infermesh: a first-response timeout,
// an idle timeout between responses, and retries (through a breaker.Policy) only until the
// first response reached the caller. Each inference is a stream of its own, which carries
// one request. It is safe for concurrent use.
//
// On a connection that also has grpcinfer's client interceptors, those open each stream
// through their own Policy (a stream they cannot open counts there) but never retry it once
// open: the retries of a streamed inference are this client's.
type StreamClient struct {
	svc       inferencepb.GRPCInferenceServiceClient
	cfg       StreamConfig
	policy    *breaker.Policy
	operation string
	provider  string
	attrs     []attribute.KeyValue
}

const streamMethod = "inference.GRPCInferenceService/ModelStreamInfer"

// NewStreamClient returns a StreamClient over cc (typically a *grpc.ClientConn), or an error
// naming the first invalid field of cfg.
func NewStreamClient(cc grpc.ClientConnInterface, cfg StreamConfig) (*StreamClient, error) {
	for _, f := range []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"FirstResponseTimeout", &cfg.FirstResponseTimeout, DefaultFirstResponseTimeout},
		{"IdleTimeout", &cfg.IdleTimeout, DefaultIdleTimeout},
	} {
		switch {
		case *f.d < 0 && *f.d != breaker.NoTimeout:
			return nil, fmt.Errorf("oip: StreamConfig.%s %v is negative (use breaker.NoTimeout to switch it off)", f.name, *f.d)
		case *f.d == 0:
			*f.d = f.def
		}
	}
	if cfg.MaxStreamDuration < 0 {
		return nil, fmt.Errorf("oip: StreamConfig.MaxStreamDuration %v is negative", cfg.MaxStreamDuration)
	}
	policy, err := breaker.New(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("oip: StreamConfig.Policy: %w", err)
	}
	c := &StreamClient{svc: inferencepb.NewGRPCInferenceServiceClient(cc), cfg: cfg, policy: policy,
		operation: cfg.TraceOperation, provider: cfg.TraceProvider,
		attrs: []attribute.KeyValue{semconv.RPCSystemNameGRPC, semconv.RPCMethodKey.String(streamMethod)}}
	if c.operation == "" {
		c.operation = grpcinfer.DefaultTraceOperation
	}
	if c.provider == "" {
		c.provider = grpcinfer.DefaultTraceProvider
	}
	return c, nil
}

// Policy returns the client's breaker.Policy, for its state and name.
func (c *StreamClient) Policy() *breaker.Policy { return c.policy }

// Infer encodes req (raw contents when req.Raw is set), opens a stream, sends the request and
// waits for the first response, retrying as the policy allows; then it returns the stream,
// whose Recv yields that response first. Encoding errors are *[TensorError]; every other
// failure is a *[StreamError] with Delivered 0. opts apply to each stream opened.
func (c *StreamClient) Infer(ctx context.Context, req *InferRequest, opts ...grpc.CallOption) (*InferStream, error) {
	m, err := EncodeRequest(req)
	if err != nil {
		return nil, err
	}
	s := &InferStream{c: c, ctx: ctx, m: m, opts: opts}
	if d := c.cfg.MaxStreamDuration; d > 0 {
		s.ctx, s.stopMax = context.WithTimeoutCause(ctx, d, ErrMaxStreamDuration)
	}
	if c.cfg.Tracing != nil {
		s.ctx, s.call = c.cfg.Tracing.Start(s.ctx, tracing.Request{
			Operation: c.operation, Provider: c.provider, Model: m.GetModelName(), Stream: true,
			RequestID: m.GetId(), Attributes: c.attrs,
		})
		s.call.Breaker(c.policy.State().String())
	}
	overrides := breaker.WithOverrides(s.ctx, breaker.Overrides{Timeout: breaker.NoTimeout, PerTryTimeout: breaker.NoTimeout})
	if _, err := breaker.Do(overrides, c.policy, s.attempt); err != nil {
		e := &StreamError{Attempts: s.attempts, Err: err}
		s.err = e
		if s.stopMax != nil {
			s.stopMax()
		}
		s.call.End(e, errorClass(e))
		return nil, e
	}
	return s, nil
}

// InferStream is the stream of responses of one request ([StreamClient.Infer]). Its methods
// must not be called concurrently; to end a Recv that waits, cancel the context given to
// Infer.
type InferStream struct {
	c       *StreamClient
	ctx     context.Context // the caller's, with the span and MaxStreamDuration
	stopMax context.CancelFunc
	m       *inferencepb.ModelInferRequest
	opts    []grpc.CallOption

	call      *tracing.Call // nil without tracing
	attempts  int
	prevEnd   time.Time // when the previous attempt ended, for the retry event
	prevClass string

	cs        inferencepb.GRPCInferenceService_ModelStreamInferClient
	cancel    context.CancelCauseFunc // ends the open stream
	sctx      context.Context
	idle      *time.Timer // the idle timeout, running only inside Recv
	first     *InferResponse
	ended     bool // the stream's Recv has returned io.EOF or an error: Trailer may be read
	delivered int
	final     bool  // the last response delivered was flagged final
	err       error // io.EOF or the *StreamError Recv returns from now on
}

// errStreamDone ends a stream's context once the stream is over.
var errStreamDone = errors.New("oip: stream finished")

// attempt opens a stream, sends the request and waits for its first response: one try of the
// policy. The stream outlives the attempt, so its context derives from the caller's.
func (s *InferStream) attempt(actx context.Context) (struct{}, error) {
	s.attempts++
	tctx, att := s.startAttempt(actx)
	sctx, cancel := context.WithCancelCause(s.ctx)
	if s.call != nil {
		carrier := propagation.MapCarrier{}
		s.c.cfg.Tracing.Inject(tctx, carrier)
		for k, v := range carrier {
			sctx = metadata.AppendToOutgoingContext(sctx, k, v)
		}
	}
	var timer *time.Timer
	if d := s.c.cfg.FirstResponseTimeout; d > 0 {
		timer = time.AfterFunc(d, func() { cancel(ErrFirstResponseTimeout) })
	}
	first, err := s.open(sctx)
	if timer != nil {
		timer.Stop()
	}
	if err != nil {
		err = attemptError{cause(sctx, err)}
		cancel(err)
		s.endAttempt(att, err)
		return struct{}{}, err
	}
	s.endAttempt(att, nil)
	s.sctx, s.cancel = sctx, cancel
	if first == nil {
		s.finish(io.EOF) // the server ended the stream well without any response
		return struct{}{}, nil
	}
	s.call.FirstChunk(time.Now())
	s.first = first
	return struct{}{}, nil
}

// attemptError is the failure of an attempt, judged for the policy: nothing was delivered.
type attemptError struct{ err error }

func (e attemptError) Error() string                   { return e.err.Error() }
func (e attemptError) Unwrap() error                   { return e.err }
func (e attemptError) BreakerVerdict() breaker.Verdict { return streamVerdict(e.err) }

// open opens the stream on sctx, sends the request, half-closes and reads the first
// response; first is nil for a stream that ended well without any.
func (s *InferStream) open(sctx context.Context) (first *InferResponse, err error) {
	cs, err := s.c.svc.ModelStreamInfer(sctx, s.opts...)
	if err != nil {
		return nil, err
	}
	// A Send that fails with io.EOF found the stream ended already: Recv gives its status.
	if err := cs.Send(s.m); err != nil && err != io.EOF {
		return nil, err
	}
	if err := cs.CloseSend(); err != nil {
		return nil, err
	}
	m, err := cs.Recv()
	if err == io.EOF {
		s.cs, s.ended = cs, true
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if first, err = decodeStreamed(m); err != nil {
		return nil, err
	}
	s.cs = cs
	return first, nil
}

// decodeStreamed decodes one message of the stream: a response, or the error it reports.
func decodeStreamed(m *inferencepb.ModelStreamInferResponse) (*InferResponse, error) {
	if m.GetErrorMessage() != "" {
		return nil, responseError(m)
	}
	return DecodeResponse(m.GetInferResponse())
}

// cause returns what ended the stream on sctx: a time limit, or the caller's context, when
// one of them did; err otherwise.
func cause(sctx context.Context, err error) error {
	if c := context.Cause(sctx); c != nil {
		return c
	}
	return err
}

// Recv returns the next response. It returns io.EOF once the server has ended the stream
// well (then [InferStream.Usage] and Trailer are set), and a *[StreamError] saying how many
// responses were delivered when the stream fails (an error response of the server, a broken
// stream, a malformed response, IdleTimeout or MaxStreamDuration); after either, it returns
// the same again. A response's [InferResponse.Final] tells whether it was the request's last.
func (s *InferStream) Recv() (*InferResponse, error) {
	if s.first != nil {
		r := s.first
		s.first = nil
		s.deliver(r)
		return r, nil
	}
	if s.err != nil {
		return nil, s.err
	}
	if d := s.c.cfg.IdleTimeout; d > 0 {
		if s.idle == nil {
			cancel := s.cancel
			s.idle = time.AfterFunc(d, func() { cancel(ErrIdleTimeout) })
		} else {
			s.idle.Reset(d)
		}
	}
	m, err := s.cs.Recv()
	if s.idle != nil {
		s.idle.Stop()
	}
	s.ended = err != nil
	if err == io.EOF {
		s.finish(io.EOF)
		return nil, io.EOF
	}
	var r *InferResponse
	if err == nil {
		r, err = decodeStreamed(m)
	} else {
		err = cause(s.sctx, err)
	}
	if err != nil {
		e := &StreamError{Delivered: s.delivered, Attempts: s.attempts, Err: err}
		s.finish(e)
		return nil, e
	}
	s.deliver(r)
	return r, nil
}

func (s *InferStream) deliver(r *InferResponse) {
	s.delivered++
	s.final = r.Final()
	s.call.Response(r.ModelName, r.ID)
}

// finish ends the stream with err (io.EOF when it ended well) and ends the span.
func (s *InferStream) finish(err error) {
	s.err = err
	if s.cancel != nil {
		s.cancel(errStreamDone)
	}
	if s.stopMax != nil {
		s.stopMax()
	}
	if err == io.EOF {
		if u, ok := s.Usage(); ok {
			s.call.Usage(tracing.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, TotalTokens: u.TotalTokens()})
		}
		s.call.End(nil, "")
		return
	}
	s.call.End(err, errorClass(err))
}

// Close ends the stream if it is not over: call it when you stop reading before Recv returned
// an error or io.EOF (it does nothing after). Recv then returns io.EOF if the last response it
// returned was flagged final (and the span counts a success), a *[StreamError] whose Err is
// context.Canceled otherwise. It always returns nil.
func (s *InferStream) Close() error {
	if s.err != nil {
		return nil
	}
	s.first = nil
	if s.final {
		s.finish(io.EOF)
	} else {
		s.finish(&StreamError{Delivered: s.delivered, Attempts: s.attempts, Err: context.Canceled})
	}
	return nil
}

// Trailer returns the stream's trailer metadata once Recv has returned io.EOF or an error of
// the stream; nil before, and after Close.
func (s *InferStream) Trailer() metadata.MD {
	if !s.ended {
		return nil
	}
	return s.cs.Trailer()
}

// Usage returns the token usage the server reported in the stream's trailers (see
// grpcinfer.ReportUsage); ok is false before the stream is over or when it reported none.
func (s *InferStream) Usage() (u grpcinfer.Usage, ok bool) {
	return grpcinfer.UsageFromTrailer(s.Trailer())
}

// Delivered counts the responses Recv has returned.
func (s *InferStream) Delivered() int { return s.delivered }

// startAttempt begins an attempt's span, recording the retry that led to it.
func (s *InferStream) startAttempt(ctx context.Context) (context.Context, *tracing.Attempt) {
	if s.call == nil {
		return ctx, nil
	}
	if s.attempts > 1 {
		s.call.Retry(s.attempts-1, time.Since(s.prevEnd), s.prevClass)
	}
	return s.call.StartAttempt(ctx, s.attempts)
}

func (s *InferStream) endAttempt(att *tracing.Attempt, err error) {
	if s.call == nil {
		return
	}
	s.prevEnd, s.prevClass = time.Now(), errorClass(err)
	att.End(err, s.prevClass)
}

// errorClass is the low-cardinality error.type of a failure: its breaker class, or its
// gRPC code when it has none.
func errorClass(err error) string {
	if err == nil {
		return ""
	}
	if v := breaker.DefaultClassifier(err); v.Class != "" && v.Class != breaker.ClassUnknown {
		return string(v.Class)
	}
	return streamCode(err).String()
}
