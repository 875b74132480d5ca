package llmclient_test

import (
	"context"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/llmclient/llmtest"
	"github.com/infermesh/infermesh/transport"
)

// BenchmarkOverhead compares bare go-openai with go-openai plus infermesh against a
// loopback llmtest server, with the same pooled transport in both. Besides ns/op it
// reports the p50 latency and the process CPU time per call (client and in-process
// server together: the difference between the two cases is infermesh's cost).
func BenchmarkOverhead(b *testing.B) {
	srv := llmtest.NewServer(llmtest.WithChunks(8, "tok "), llmtest.WithMaxRecords(16))
	defer srv.Close()
	for _, stream := range []bool{false, true} {
		name := "unary"
		if stream {
			name = "stream"
		}
		b.Run(name+"/bare", func(b *testing.B) {
			tr, err := transport.New(transport.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			benchCalls(b, srv, &http.Client{Transport: tr}, stream)
		})
		b.Run(name+"/infermesh", func(b *testing.B) {
			hc, err := llmclient.NewHTTPClient(llmclient.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer hc.CloseIdleConnections()
			benchCalls(b, srv, hc, stream)
		})
	}
}

func benchCalls(b *testing.B, srv *llmtest.Server, hc *http.Client, stream bool) {
	cfg := openai.DefaultConfig("sk-bench")
	cfg.BaseURL = srv.URL + "/v1"
	cfg.HTTPClient = hc
	client := openai.NewClientWithConfig(cfg)
	ctx := context.Background()
	req := chatReq(stream)
	call := func() {
		if !stream {
			if _, err := client.CreateChatCompletion(ctx, req); err != nil {
				b.Fatal(err)
			}
			return
		}
		if res := readStream(ctx, client, req); res.err != nil || res.openErr != nil {
			b.Fatal(res.err, res.openErr)
		}
	}
	for range 50 { // warm the pool
		call()
	}
	lat := make([]time.Duration, 0, b.N)
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		call()
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
