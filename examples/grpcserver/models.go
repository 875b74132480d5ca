package main

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
)

// xorMLP is a two-layer perceptron with hand-set weights that computes XOR of two inputs:
// hidden h1 = σ(20·x1 + 20·x2 − 10) (OR), h2 = σ(−20·x1 − 20·x2 + 30) (NAND), output
// y = σ(20·h1 + 20·h2 − 30) (AND of the two), which is XOR. Input "x" is FP32 [batch, 2] with
// values in [0, 1]; outputs are "probability" (FP32 [batch], the sigmoid output) and "label"
// (INT64 [batch], the probability rounded). It is a real computation, but not a trained model:
// the weights are the textbook OR/NAND/AND construction.
type xorMLP struct{}

var (
	hiddenW = [2][2]float64{{20, 20}, {-20, -20}}
	hiddenB = [2]float64{-10, 30}
	outW    = [2]float64{20, 20}
	outB    = -30.0
)

func sigmoid(v float64) float64 { return 1 / (1 + math.Exp(-v)) }

func (xorMLP) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Name: "xor-mlp", Versions: []string{"1"}, Platform: "go",
		Inputs: []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1, 2}}},
		Outputs: []oip.TensorMetadata{
			{Name: "probability", Datatype: oip.FP32, Shape: []int64{-1}},
			{Name: "label", Datatype: oip.Int64, Shape: []int64{-1}},
		},
	}
}

func (xorMLP) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	x, err := oip.TensorData[float32](req.Inputs[0])
	if err != nil {
		return nil, err
	}
	batch := req.Inputs[0].Shape[0]
	prob := make([]float32, batch)
	label := make([]int64, batch)
	for i := range batch {
		x1, x2 := float64(x[2*i]), float64(x[2*i+1])
		var h [2]float64
		for j := range h {
			h[j] = sigmoid(hiddenW[j][0]*x1 + hiddenW[j][1]*x2 + hiddenB[j])
		}
		y := sigmoid(outW[0]*h[0] + outW[1]*h[1] + outB)
		prob[i] = float32(y)
		if y >= 0.5 {
			label[i] = 1
		}
	}
	// This model has no tokens; it reports its element counts through the usage trailers
	// to show how a generative model would report input and output tokens.
	grpcinfer.ReportUsage(ctx, int64(len(x)), 2*batch)
	return &oip.InferResponse{Outputs: []oip.Tensor{
		oip.NewTensor("probability", []int64{batch}, prob),
		oip.NewTensor("label", []int64{batch}, label),
	}}, nil
}

// generator is a small deterministic text generator that streams its tokens, as an LLM
// served by Triton's decoupled backends does: input "text_input" (BYTES [1]) is the prompt,
// each response carries one token as "text_output" (BYTES [1]), the last flagged final. Its
// "model" answers with the prompt's words in reverse order, so the output is easy to check
// by eye; the request parameter "max_tokens" (int64, default 16) caps the answer. pace is the
// time each token takes, standing in for a decoding step. Prompt words and tokens are
// reported as input and output tokens through the usage trailers.
type generator struct {
	pace time.Duration
}

const defaultMaxTokens = 16

func (generator) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Name: "generator", Versions: []string{"1"}, Platform: "go",
		Inputs:  []oip.TensorMetadata{{Name: "text_input", Datatype: oip.Bytes, Shape: []int64{1}}},
		Outputs: []oip.TensorMetadata{{Name: "text_output", Datatype: oip.Bytes, Shape: []int64{1}}},
	}
}

// tokens returns the answer to a request, token by token.
func (generator) tokens(req *oip.InferRequest) ([]string, int, error) {
	in, err := oip.TensorData[[]byte](req.Inputs[0])
	if err != nil {
		return nil, 0, err
	}
	words := strings.Fields(string(in[0]))
	limit := int64(defaultMaxTokens)
	if p, ok := req.Parameters["max_tokens"]; ok && p.GetInt64Param() > 0 {
		limit = p.GetInt64Param()
	}
	var out []string
	for i := len(words) - 1; i >= 0 && int64(len(out)) < limit; i-- {
		tok := words[i]
		if len(out) > 0 {
			tok = " " + tok
		}
		out = append(out, tok)
	}
	return out, len(words), nil
}

func text(s string) *oip.InferResponse {
	return &oip.InferResponse{Outputs: []oip.Tensor{oip.NewTensor("text_output", []int64{1}, [][]byte{[]byte(s)})}}
}

// Infer answers with the whole text at once, for ModelInfer.
func (g generator) Infer(ctx context.Context, req *oip.InferRequest) (*oip.InferResponse, error) {
	toks, words, err := g.tokens(req)
	if err != nil {
		return nil, err
	}
	grpcinfer.ReportUsage(ctx, int64(words), int64(len(toks)))
	return text(strings.Join(toks, "")), nil
}

// InferStream sends each token as soon as it is "decoded", for ModelStreamInfer.
func (g generator) InferStream(ctx context.Context, req *oip.InferRequest, send oip.Sender) error {
	toks, words, err := g.tokens(req)
	if err != nil {
		return err
	}
	grpcinfer.ReportUsage(ctx, int64(words), 0)
	for i, tok := range toks {
		if g.pace > 0 {
			select {
			case <-time.After(g.pace):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := send(text(tok), i == len(toks)-1); err != nil {
			return err
		}
		grpcinfer.ReportUsage(ctx, 0, 1)
	}
	return nil
}
