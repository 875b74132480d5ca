package quota

import (
	"encoding/json"
	"strings"
	"testing"
)

// chatBody returns a chat completion request of about n bytes.
func chatBody(n int) []byte {
	text := strings.Repeat(`Tell me about \"rate limits\" again, please. `, n/46)
	return []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are helpful."},` +
		`{"role":"user","content":"` + text + `"}],"temperature":0.2,"max_tokens":256}`)
}

// BenchmarkEstimateTokens measures the top-level scan; BenchmarkEstimateTokensEncodingJSON
// the same answer from encoding/json, which is why the scan exists.
func BenchmarkEstimateTokens(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KB", 1 << 10}, {"32KB", 32 << 10}} {
		body := chatBody(size.n)
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if EstimateTokens(body, 0) < 256 {
					b.Fatal("max_tokens not found")
				}
			}
		})
		b.Run(size.name+"EncodingJSON", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var v struct {
					MaxTokens           *int `json:"max_tokens"`
					MaxCompletionTokens *int `json:"max_completion_tokens"`
					MaxOutputTokens     *int `json:"max_output_tokens"`
				}
				if json.Unmarshal(body, &v) != nil || v.MaxTokens == nil {
					b.Fatal("max_tokens not found")
				}
			}
		})
	}
}
