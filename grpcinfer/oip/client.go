package oip

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// Client calls any server of the protocol (this package's [Server], KServe, Triton, MLServer)
// with typed tensors. It is a thin layer over the generated client: resilience, compression
// and tracing come from the connection's dial options (see package grpcinfer). Streamed
// inference is [StreamClient]'s; the repository and statistics calls are the generated
// client's ([Client.Service]). It is safe for concurrent use.
type Client struct {
	svc inferencepb.GRPCInferenceServiceClient
}

// NewClient returns a Client over cc (typically a *grpc.ClientConn).
func NewClient(cc grpc.ClientConnInterface) *Client {
	return &Client{svc: inferencepb.NewGRPCInferenceServiceClient(cc)}
}

// Service returns the generated client, for calls this type does not wrap.
func (c *Client) Service() inferencepb.GRPCInferenceServiceClient { return c.svc }

// Infer encodes req (raw contents when req.Raw is set), calls ModelInfer and decodes the
// response. Encoding errors are *[TensorError]; call errors come from gRPC (use
// status.FromError); a malformed response is a *[TensorError] for the output at fault.
func (c *Client) Infer(ctx context.Context, req *InferRequest, opts ...grpc.CallOption) (*InferResponse, error) {
	m, err := EncodeRequest(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.svc.ModelInfer(ctx, m, opts...)
	if err != nil {
		return nil, err
	}
	return DecodeResponse(resp)
}

// ServerLive reports whether the server is live.
func (c *Client) ServerLive(ctx context.Context, opts ...grpc.CallOption) (bool, error) {
	r, err := c.svc.ServerLive(ctx, &inferencepb.ServerLiveRequest{}, opts...)
	return r.GetLive(), err
}

// ServerReady reports whether the server is ready for inference.
func (c *Client) ServerReady(ctx context.Context, opts ...grpc.CallOption) (bool, error) {
	r, err := c.svc.ServerReady(ctx, &inferencepb.ServerReadyRequest{}, opts...)
	return r.GetReady(), err
}

// ModelReady reports whether a model (and version; "" lets the server choose) is ready.
func (c *Client) ModelReady(ctx context.Context, name, version string, opts ...grpc.CallOption) (bool, error) {
	r, err := c.svc.ModelReady(ctx, &inferencepb.ModelReadyRequest{Name: name, Version: version}, opts...)
	return r.GetReady(), err
}

// ModelMetadata fetches a model's metadata.
func (c *Client) ModelMetadata(ctx context.Context, name, version string, opts ...grpc.CallOption) (ModelMetadata, error) {
	r, err := c.svc.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: name, Version: version}, opts...)
	if err != nil {
		return ModelMetadata{}, err
	}
	meta := ModelMetadata{Name: r.GetName(), Versions: r.GetVersions(), Platform: r.GetPlatform()}
	for _, t := range r.GetInputs() {
		meta.Inputs = append(meta.Inputs, TensorMetadata{Name: t.GetName(), Datatype: Datatype(t.GetDatatype()), Shape: t.GetShape()})
	}
	for _, t := range r.GetOutputs() {
		meta.Outputs = append(meta.Outputs, TensorMetadata{Name: t.GetName(), Datatype: Datatype(t.GetDatatype()), Shape: t.GetShape()})
	}
	return meta, nil
}

// ServerMetadata fetches the server's name, version and extensions.
func (c *Client) ServerMetadata(ctx context.Context, opts ...grpc.CallOption) (name, version string, extensions []string, err error) {
	r, err := c.svc.ServerMetadata(ctx, &inferencepb.ServerMetadataRequest{}, opts...)
	if err != nil {
		return "", "", nil, err
	}
	return r.GetName(), r.GetVersion(), r.GetExtensions(), nil
}

// Output returns the named output decoded as []E, failing with a clear error when the output
// is missing or holds another element type.
func Output[E Element](r *InferResponse, name string) ([]E, error) {
	t, ok := r.Output(name)
	if !ok {
		return nil, fmt.Errorf("oip: response has no output %q", name)
	}
	return TensorData[E](t)
}
