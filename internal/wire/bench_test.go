package wire

import "testing"

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
