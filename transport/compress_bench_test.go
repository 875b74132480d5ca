package transport

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// embeddingsJSON returns an OpenAI-style embeddings response: vectors x dims float32 values.
func embeddingsJSON(vectors, dims int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString(`{"object":"list","data":[`)
	for i := range vectors {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"object":"embedding","index":%d,"embedding":[`, i)
		for j := range dims {
			if j > 0 {
				b.WriteByte(',')
			}
			v := float32(rng.NormFloat64() * 0.03)
			b.Write(strconv.AppendFloat(nil, float64(v), 'g', -1, 32))
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`],"model":"text-embedding-3-small","usage":{"prompt_tokens":512,"total_tokens":512}}`)
	return b.Bytes()
}

// chatJSON returns a chat request with n messages of text drawn from a small vocabulary:
// repetitive text, unlike the near-random digits of embeddings.
func chatJSON(n int) []byte {
	words := strings.Fields("the model returns a response to each request in the mesh when the sidecar " +
		"is ready and the upstream answers within its deadline so retries stay within budget")
	rng := rand.New(rand.NewPCG(3, 4))
	var b bytes.Buffer
	b.WriteString(`{"model":"gpt-4o-mini","messages":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"role":"user","content":"`)
		for j := range 40 {
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[rng.IntN(len(words))])
		}
		b.WriteString(`"}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// BenchmarkCompressEmbeddings compresses a 64 x 1536 embeddings payload with each codec at
// the default level; MB/s is of the uncompressed input, ratio is input/output size.
func BenchmarkCompressEmbeddings(b *testing.B) {
	benchmarkCompress(b, embeddingsJSON(64, 1536))
}

// BenchmarkCompressChat does the same for a repetitive chat request of about 1 MB.
func BenchmarkCompressChat(b *testing.B) {
	benchmarkCompress(b, chatJSON(4000))
}

func benchmarkCompress(b *testing.B, data []byte) {
	for _, enc := range []Encoding{EncodingZstd, EncodingGzip} {
		b.Run(string(enc), func(b *testing.B) {
			c, err := NewCompressor(nil, CompressionConfig{Encoding: enc})
			if err != nil {
				b.Fatal(err)
			}
			out := c.compress(data)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				out = c.compress(data)
			}
			b.ReportMetric(float64(len(data))/float64(len(out)), "ratio")
		})
	}
}

func TestEmbeddingsPayloadShape(t *testing.T) {
	t.Parallel()
	data := embeddingsJSON(64, 1536)
	if n := bytes.Count(data, []byte(`"embedding":[`)); n != 64 {
		t.Fatalf("%d vectors", n)
	}
	if n := bytes.Count(data, []byte(",")); n < 64*1535 {
		t.Fatalf("%d commas", n)
	}
	for _, enc := range []Encoding{EncodingZstd, EncodingGzip} {
		c, _ := NewCompressor(nil, CompressionConfig{Encoding: enc})
		var buf bytes.Buffer
		if err := (&decoders{}).decode(string(enc), bytes.NewReader(c.compress(data)), int64(len(data)), &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("%s round trip differs", enc)
		}
	}
}
