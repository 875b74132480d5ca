package llmtest

import (
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
)

// maxEmbeddingFloats bounds the numbers of one embeddings response (inputs × dimension).
const maxEmbeddingFloats = 1 << 20

// embeddingRequest is what the server uses of an embeddings request.
type embeddingRequest struct {
	model     string
	inputs    []textInput
	base64    bool
	dimension int
}

// parseEmbedding validates an embeddings request body.
func (s *Server) parseEmbedding(body []byte) (embeddingRequest, *apiError) {
	var req embeddingRequest
	f, e := s.parseFields(body)
	if e != nil {
		return req, e
	}
	if req.model, e = s.model(f); e != nil {
		return req, e
	}
	if req.inputs, e = textInputs(f["input"], "input", maxPrompts); e != nil {
		return req, e
	}
	for i, in := range req.inputs {
		if !in.isTokens && in.text == "" || in.isTokens && len(in.tokens) == 0 {
			param := "input"
			if len(req.inputs) > 1 {
				param = "input[" + strconv.Itoa(i) + "]"
			}
			return req, invalidRequest("Invalid '"+param+"': empty input. Expected a non-empty string or array of integers.", param, "empty_input")
		}
	}
	format, e := str(f["encoding_format"], "encoding_format")
	if e != nil {
		return req, e
	}
	switch format {
	case "", "float":
	case "base64":
		req.base64 = true
	default:
		return req, invalidValue(format, "encoding_format", []string{"float", "base64"})
	}
	dim, e := integer(f["dimensions"], "dimensions", 1, maxEmbeddingDimension)
	if e != nil {
		return req, e
	}
	req.dimension = s.cfg.dimension
	if dim > 0 {
		req.dimension = int(dim)
	}
	if n := len(req.inputs) * req.dimension; n > maxEmbeddingFloats {
		return req, invalidRequest("Invalid request: "+strconv.Itoa(len(req.inputs))+" inputs of "+strconv.Itoa(req.dimension)+
			" dimensions exceed the server's limit of "+strconv.Itoa(maxEmbeddingFloats)+" numbers per response.", "input", "")
	}
	return req, nil
}

// Embedding returns the vector the server answers for the string input s at the given
// dimension: a deterministic unit vector drawn from a hash of s, so that equal inputs get
// equal vectors and different inputs (almost surely) different ones.
func Embedding(s string, dimension int) []float32 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return unitVector(h.Sum64(), dimension)
}

// tokensEmbedding is Embedding for an input given as token ids.
func tokensEmbedding(tokens []int64, dimension int) []float32 {
	h := fnv.New64a()
	_, _ = h.Write([]byte{0xff}) // keep token inputs apart from string inputs
	var b [8]byte
	for _, t := range tokens {
		binary.LittleEndian.PutUint64(b[:], uint64(t))
		_, _ = h.Write(b[:])
	}
	return unitVector(h.Sum64(), dimension)
}

func unitVector(key uint64, dimension int) []float32 {
	r := rand.New(rand.NewPCG(key, uint64(dimension)))
	v := make([]float32, dimension)
	var norm float64
	for i := range v {
		f := r.NormFloat64()
		v[i] = float32(f)
		norm += f * f
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		norm = 1
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}

type embeddingItem struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embeddingItem `json:"data"`
	Model  string          `json:"model"`
	Usage  struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// embeddings answers POST /v1/embeddings.
func (x *exchange) embeddings() {
	req, e := x.s.parseEmbedding(x.body)
	if e != nil {
		x.writeAPIError(e)
		return
	}
	prompt := 0
	for _, in := range req.inputs {
		prompt += in.tokenCount()
	}
	if !x.admit(req.model, prompt) {
		return
	}
	out := embeddingList{Object: "list", Model: req.model, Data: make([]embeddingItem, len(req.inputs))}
	for i, in := range req.inputs {
		var v []float32
		if in.isTokens {
			v = tokensEmbedding(in.tokens, req.dimension)
		} else {
			v = Embedding(in.text, req.dimension)
		}
		out.Data[i] = embeddingItem{Object: "embedding", Index: i, Embedding: v}
		if req.base64 {
			b := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(f))
			}
			out.Data[i].Embedding = base64.StdEncoding.EncodeToString(b)
		}
	}
	out.Usage.PromptTokens, out.Usage.TotalTokens = prompt, prompt
	x.respondJSON(append(mustJSON(out), '\n'))
}
