package payload

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/infermesh/infermesh/grpcinfer/oip"
)

// Kind names a payload.
type Kind string

// The payloads.
const (
	KindChat       Kind = "chat-1KiB"
	KindEmbeddings Kind = "embeddings-64x1536"
	KindTensor     Kind = "tensor-4MiB"
)

// Kinds lists every payload, smallest first.
func Kinds() []Kind { return []Kind{KindChat, KindEmbeddings, KindTensor} }

// The dimensions of the payloads.
const (
	ChatBytes       = 1 << 10
	EmbeddingsBatch = 64
	EmbeddingsDim   = 1536
	TensorRows      = 1024
	TensorCols      = 1024
)

// Model names of the upstream's Open Inference Protocol models.
const (
	ModelChat    = "chat"
	ModelVectors = "vectors"
)

// HTTP is one payload as an HTTP request.
type HTTP struct {
	// Path is the request path.
	Path string
	// ContentType is the body's media type.
	ContentType string
	// Body is the uncompressed body.
	Body []byte
}

// ForHTTP returns the HTTP request of k.
func ForHTTP(k Kind) (HTTP, error) {
	switch k {
	case KindChat:
		return HTTP{Path: "/v1/chat/completions", ContentType: "application/json", Body: Chat()}, nil
	case KindEmbeddings:
		return HTTP{Path: "/v1/vectors", ContentType: "application/json", Body: Embeddings()}, nil
	case KindTensor:
		return HTTP{Path: "/v2/models/tensor/infer", ContentType: "application/octet-stream", Body: Tensor()}, nil
	}
	return HTTP{}, fmt.Errorf("payload: unknown Kind %q", k)
}

// Chat returns a chat completion request of exactly ChatBytes bytes of JSON.
func Chat() []byte {
	words := strings.Fields("the quick brown fox jumps over the lazy dog while a mesh sidecar " +
		"forwards every request and the model answers with tokens one by one")
	r := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	build := func(n int) []byte {
		sb.Reset()
		for sb.Len() < n {
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(words[r.IntN(len(words))])
		}
		b, _ := json.Marshal(map[string]any{
			"model": "gpt-4o-mini",
			"messages": []map[string]string{
				{"role": "system", "content": "You are a helpful assistant."},
				{"role": "user", "content": sb.String()[:n]},
			},
			"max_tokens": 64,
		})
		return b
	}
	b := build(1)
	// Grow the user message to hit the size exactly (every word and space is one byte of JSON).
	return build(1 + ChatBytes - len(b))
}

func normals(source uint64, n int) []float32 {
	r := rand.New(rand.NewPCG(source, source^0x9e3779b97f4a7c15))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64() * 0.05)
	}
	return out
}

// EmbeddingVectors returns the embeddings batch as floats, row-major.
func EmbeddingVectors() []float32 { return normals(3, EmbeddingsBatch*EmbeddingsDim) }

// Embeddings returns the embeddings batch as JSON: {"model":...,"vectors":[[...],...]}, each
// float written with 9 significant digits, as embedding APIs do.
func Embeddings() []byte {
	v := EmbeddingVectors()
	b := make([]byte, 0, len(v)*12)
	b = append(b, `{"model":"text-embedding-3-small","vectors":[`...)
	for i := range EmbeddingsBatch {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j := range EmbeddingsDim {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(v[i*EmbeddingsDim+j]), 'g', 9, 32)
		}
		b = append(b, ']')
	}
	return append(b, "]}"...)
}

// TensorValues returns the tensor's floats, row-major.
func TensorValues() []float32 { return normals(4, TensorRows*TensorCols) }

// Tensor returns the tensor as little-endian float32 bytes (4 MiB).
func Tensor() []byte {
	v := TensorValues()
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// Infer returns the Open Inference Protocol request of k. FP32 tensors travel raw.
func Infer(k Kind) (*oip.InferRequest, error) {
	switch k {
	case KindChat:
		return &oip.InferRequest{ModelName: ModelChat, Inputs: []oip.Tensor{
			oip.NewTensor("text", []int64{1}, [][]byte{Chat()}),
		}}, nil
	case KindEmbeddings:
		return &oip.InferRequest{ModelName: ModelVectors, Raw: true, Inputs: []oip.Tensor{
			oip.NewTensor("x", []int64{EmbeddingsBatch, EmbeddingsDim}, EmbeddingVectors()),
		}}, nil
	case KindTensor:
		return &oip.InferRequest{ModelName: ModelVectors, Raw: true, Inputs: []oip.Tensor{
			oip.NewTensor("x", []int64{TensorRows, TensorCols}, TensorValues()),
		}}, nil
	}
	return nil, fmt.Errorf("payload: unknown Kind %q", k)
}
