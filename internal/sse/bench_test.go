package sse

import "testing"

const benchEvent = "data: {\"id\":\"chatcmpl-AbC123xyz\",\"object\":\"chat.completion.chunk\",\"created\":1717000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"

// endless yields the same event forever, filling each read like a socket.
type endless struct {
	ev  []byte
	off int
}

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], e.ev[e.off:])
		n += c
		e.off = (e.off + c) % len(e.ev)
	}
	return n, nil
}

// BenchmarkScanChunk is the per-event cost of scanning a typical
// chat.completion.chunk stream.
func BenchmarkScanChunk(b *testing.B) {
	s := NewScanner(&endless{ev: []byte(benchEvent)}, Options{})
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	for b.Loop() {
		if !s.Next() {
			b.Fatal(s.Err())
		}
	}
}
