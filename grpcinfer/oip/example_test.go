package oip_test

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/infermesh/infermesh/grpcinfer/oip"
)

// doubler is a model that multiplies its FP32 input by two.
type doubler struct{}

func (doubler) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Name:    "doubler",
		Inputs:  []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1}}},
		Outputs: []oip.TensorMetadata{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1}}},
	}
}

func (doubler) Infer(_ context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	x, err := oip.TensorData[float32](req.Inputs[0])
	if err != nil {
		return nil, err
	}
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = 2 * v
	}
	return &oip.InferResponse{Outputs: []oip.Tensor{oip.NewTensor("y", req.Inputs[0].Shape, y)}}, nil
}

// Example serves a Go model over the Open Inference Protocol on a loopback port and calls it
// with raw tensor contents.
func Example() {
	srv, err := oip.NewServer(oip.ServerConfig{Models: []oip.Model{doubler{}}})
	if err != nil {
		panic(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	go gs.Serve(lis)
	defer gs.Stop()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer cc.Close()

	resp, err := oip.NewClient(cc).Infer(context.Background(), &oip.InferRequest{
		ModelName: "doubler",
		Inputs:    []oip.Tensor{oip.NewTensor("x", []int64{3}, []float32{1, 2.5, -4})},
		Raw:       true,
	})
	if err != nil {
		panic(err)
	}
	y, err := oip.Output[float32](resp, "y")
	fmt.Println(y, resp.Raw, err)
	// Output: [2 5 -8] true <nil>
}

// ExampleDecodeRequest shows the error a malformed request produces: it names the tensor.
func ExampleDecodeRequest() {
	m, _ := oip.EncodeRequest(&oip.InferRequest{Inputs: []oip.Tensor{oip.NewTensor("pixels", []int64{2, 2}, []uint8{1, 2, 3, 4})}, Raw: true})
	m.RawInputContents[0] = m.RawInputContents[0][:3] // truncate
	_, err := oip.DecodeRequest(m)
	fmt.Println(err)
	// Output: oip: input "pixels": shape [2 2] of UINT8 needs 4 raw bytes but has 3
}
