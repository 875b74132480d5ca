package llmclient_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

var evict = make([]byte, 16<<20)

func BenchmarkZZCold(b *testing.B) {
	base := canned{body: []byte(cannedChat), contentType: "application/json"}
	for _, nc := range bareAndInfermesh(b, base) {
		b.Run(nc.name, func(b *testing.B) {
			cfg := openai.DefaultConfig("sk-bench")
			cfg.BaseURL = "http://127.0.0.1:1/v1"
			cfg.HTTPClient = nc.hc
			client := openai.NewClientWithConfig(cfg)
			req := chatReq(false)
			var total time.Duration
			for b.Loop() {
				for i := 0; i < len(evict); i += 64 {
					evict[i]++
				}
				start := time.Now()
				if _, err := client.CreateChatCompletion(context.Background(), req); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "call-ns")
		})
	}
	_ = http.StatusOK
}
