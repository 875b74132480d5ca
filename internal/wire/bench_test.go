package wire

import (
	"strconv"
	"strings"
	"testing"
)

func BenchmarkParseChunk(b *testing.B) {
	data := []byte(chunkContent)
	var f Fields
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Parse(data, &f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	data := []byte(fullResponse)
	var f Fields
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Parse(data, &f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParserChunk is the per-chunk cost in a stream, where a Parser's
// caches apply.
func BenchmarkParserChunk(b *testing.B) {
	data := []byte(chunkContent)
	var f Fields
	var p Parser
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Parse(data, &f); err != nil {
			b.Fatal(err)
		}
	}
}

// chatRequest1K is a 1 KiB chat request, its prompt one long string.
var chatRequest1K = []byte(`{"max_tokens":64,"messages":[{"content":"You are a helpful assistant.","role":"system"},{"content":"` +
	strings.Repeat("the quick brown fox jumps over the lazy dog ", 22) + `","role":"user"}],"model":"gpt-4o-mini"}`)

func BenchmarkParseRequest(b *testing.B) {
	var r Request
	b.SetBytes(int64(len(chatRequest1K)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ParseRequest(chatRequest1K, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRequestEscapes is a prompt of prose: runs longer than
// longString between escapes. Its cost must grow linearly with the prompt.
func BenchmarkParseRequestEscapes(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20} {
		line := strings.Repeat("x", 66) + `\n`
		body := []byte(`{"model":"m","messages":[{"role":"user","content":"` +
			strings.Repeat(line, size/len(line)) + `"}]}`)
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			var r Request
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := ParseRequest(body, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
