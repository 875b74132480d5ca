package payload

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/infermesh/infermesh/grpcinfer/oip"
)

func TestSizesAndDeterminism(t *testing.T) {
	t.Parallel()
	chat := Chat()
	if len(chat) != ChatBytes {
		t.Errorf("chat is %d bytes, want %d", len(chat), ChatBytes)
	}
	var c struct {
		Model    string `json:"model"`
		Messages []struct{ Role, Content string }
	}
	if err := json.Unmarshal(chat, &c); err != nil || c.Model == "" || len(c.Messages) != 2 {
		t.Errorf("chat is not a chat request: %v %+v", err, c)
	}
	var e struct {
		Vectors [][]float32 `json:"vectors"`
	}
	emb := Embeddings()
	if err := json.Unmarshal(emb, &e); err != nil {
		t.Fatal(err)
	}
	if len(e.Vectors) != EmbeddingsBatch || len(e.Vectors[0]) != EmbeddingsDim {
		t.Errorf("embeddings %dx%d, want %dx%d", len(e.Vectors), len(e.Vectors[0]), EmbeddingsBatch, EmbeddingsDim)
	}
	if v := EmbeddingVectors(); e.Vectors[5][7] != v[5*EmbeddingsDim+7] {
		t.Errorf("JSON float %v does not round-trip %v", e.Vectors[5][7], v[5*EmbeddingsDim+7])
	}
	if n := len(emb); n < 900_000 || n > 1_400_000 {
		t.Errorf("embeddings JSON is %d bytes, want about 1 MiB", n)
	}
	if n := len(Tensor()); n != 4<<20 {
		t.Errorf("tensor is %d bytes, want 4 MiB", n)
	}
	if !bytes.Equal(Chat(), chat) || !bytes.Equal(Embeddings(), emb) {
		t.Error("payloads differ between calls")
	}
}

func TestForHTTPAndInfer(t *testing.T) {
	t.Parallel()
	for _, k := range Kinds() {
		h, err := ForHTTP(k)
		if err != nil || h.Path == "" || h.ContentType == "" || len(h.Body) == 0 {
			t.Errorf("ForHTTP(%s) = %+v, %v", k, h.Path, err)
		}
		r, err := Infer(k)
		if err != nil {
			t.Fatalf("Infer(%s): %v", k, err)
		}
		m, err := oip.EncodeRequest(r)
		if err != nil {
			t.Fatalf("Infer(%s) does not encode: %v", k, err)
		}
		if _, err := oip.DecodeRequest(m); err != nil {
			t.Fatalf("Infer(%s) does not decode: %v", k, err)
		}
	}
	if _, err := ForHTTP("x"); err == nil {
		t.Error("ForHTTP of an unknown kind: want an error")
	}
	if _, err := Infer("x"); err == nil {
		t.Error("Infer of an unknown kind: want an error")
	}
}
