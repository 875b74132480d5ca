package wire

import (
	"strconv"
	"strings"
	"testing"
)

// benchParse runs parse over data, reporting throughput and allocations.
func benchParse(b *testing.B, data []byte, parse func([]byte) error) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func parseFields(data []byte) error {
	var f Fields
	return Parse(data, &f)
}

func parseRequest(data []byte) error {
	var r Request
	return ParseRequest(data, &r)
}

func BenchmarkParseChunk(b *testing.B) { benchParse(b, []byte(chunkContent), parseFields) }

func BenchmarkParseResponse(b *testing.B) { benchParse(b, []byte(fullResponse), parseFields) }

// BenchmarkParserChunk is the per-chunk cost in a stream, where a Parser's
// caches apply.
func BenchmarkParserChunk(b *testing.B) {
	var f Fields
	var p Parser
	benchParse(b, []byte(chunkContent), func(data []byte) error { return p.Parse(data, &f) })
}

// chatRequest1K is a 1 KiB chat request, its prompt one long string.
var chatRequest1K = []byte(`{"max_tokens":64,"messages":[{"content":"You are a helpful assistant.","role":"system"},{"content":"` +
	strings.Repeat("the quick brown fox jumps over the lazy dog ", 22) + `","role":"user"}],"model":"gpt-4o-mini"}`)

func BenchmarkParseRequest(b *testing.B) { benchParse(b, chatRequest1K, parseRequest) }

// BenchmarkParseRequestEscapes is a prompt of prose: runs longer than
// longString between escapes. Its cost must grow linearly with the prompt.
func BenchmarkParseRequestEscapes(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20} {
		line := strings.Repeat("x", 66) + `\n`
		body := []byte(`{"model":"m","messages":[{"role":"user","content":"` +
			strings.Repeat(line, size/len(line)) + `"}]}`)
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) { benchParse(b, body, parseRequest) })
	}
}
