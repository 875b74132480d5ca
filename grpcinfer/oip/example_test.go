package oip_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

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

// spell streams the letters of its "word" input, one response per letter: a decoupled model.
type spell struct{}

func (spell) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Name:    "spell",
		Inputs:  []oip.TensorMetadata{{Name: "word", Datatype: oip.Bytes, Shape: []int64{1}}},
		Outputs: []oip.TensorMetadata{{Name: "letter", Datatype: oip.Bytes, Shape: []int64{1}}},
	}
}

func (s spell) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	w, err := oip.TensorData[[]byte](req.Inputs[0])
	if err != nil {
		return nil, err
	}
	return letter(w[0]), nil
}

func (spell) InferStream(ctx context.Context, req *oip.InferRequest, send oip.Sender) error {
	w, err := oip.TensorData[[]byte](req.Inputs[0])
	if err != nil {
		return err
	}
	for i := range w[0] {
		if err := send(letter(w[0][i:i+1]), i == len(w[0])-1); err != nil {
			return err
		}
	}
	return nil
}

func letter(b []byte) *oip.InferResponse {
	return &oip.InferResponse{Outputs: []oip.Tensor{oip.NewTensor("letter", []int64{1}, [][]byte{b})}}
}

// serveExample serves models on a loopback port, as Example does, and returns a connection
// to them and a func that stops everything.
func serveExample(models ...oip.Model) (*grpc.ClientConn, func()) {
	srv, err := oip.NewServer(oip.ServerConfig{Models: models})
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
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	return cc, func() { cc.Close(); gs.Stop() }
}

// ExampleStreamClient streams the responses of a decoupled model over ModelStreamInfer.
func ExampleStreamClient() {
	cc, stop := serveExample(spell{})
	defer stop()

	client, err := oip.NewStreamClient(cc, oip.StreamConfig{IdleTimeout: 10 * time.Second})
	if err != nil {
		panic(err)
	}
	stream, err := client.Infer(context.Background(), &oip.InferRequest{
		ModelName: "spell",
		Inputs:    []oip.Tensor{oip.NewTensor("word", []int64{1}, [][]byte{[]byte("mesh")})},
	})
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		l, _ := oip.Output[[]byte](resp, "letter")
		fmt.Printf("%s final=%v\n", l[0], resp.Final())
	}
	// Output:
	// m final=false
	// e final=false
	// s final=false
	// h final=true
}
