package grpcinfer

import (
	"context"
	"strconv"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/infermesh/infermesh/tracing"
)

// Trailer keys that carry the token usage a handler reported with [ReportUsage]. Values are
// decimal integers.
const (
	TrailerInputTokens  = "infermesh-input-tokens"
	TrailerOutputTokens = "infermesh-output-tokens"
)

// Usage is a token count, as a handler reports it and a client reads it back.
type Usage struct {
	InputTokens, OutputTokens int64
}

// TotalTokens returns InputTokens + OutputTokens.
func (u Usage) TotalTokens() int64 { return u.InputTokens + u.OutputTokens }

type usageKey struct{}

// usage accumulates what a handler reports; the handler may report from several goroutines.
type usage struct {
	in, out  atomic.Int64
	reported atomic.Bool
	noLegacy bool
	call     *tracing.Call // the server span of ServerConfig.Tracing; nil without it
}

// ReportUsage adds token counts to the current call, for handlers running under
// [ServerInterceptors] (or [ServerOptions]). When the handler returns, the totals are sent to
// the client as the trailers [TrailerInputTokens] and [TrailerOutputTokens] and recorded on a
// span: the server span of [ServerConfig].Tracing when set (as gen_ai.usage.* and the usage
// metrics), otherwise the recording span in the call's context, if any, as
// gen_ai.usage.input_tokens and gen_ai.usage.output_tokens plus llm.input_tokens,
// llm.output_tokens and llm.total_tokens (unless [ServerConfig].DisableLegacyLLMTags). A
// streaming handler may call it once per message: the counts add up. It is safe for
// concurrent use and reports whether ctx belongs to such a call.
func ReportUsage(ctx context.Context, inputTokens, outputTokens int64) bool {
	u, ok := ctx.Value(usageKey{}).(*usage)
	if !ok {
		return false
	}
	u.in.Add(inputTokens)
	u.out.Add(outputTokens)
	u.reported.Store(true)
	return true
}

// finish records the totals on the span and returns the trailers, or nil if nothing was
// reported.
func (u *usage) finish(ctx context.Context) metadata.MD {
	if !u.reported.Load() {
		return nil
	}
	in, out := u.in.Load(), u.out.Load()
	if u.call != nil {
		u.call.Usage(tracing.Usage{InputTokens: in, OutputTokens: out, TotalTokens: in + out})
	} else if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(semconv.GenAIUsageInputTokens(int(in)), semconv.GenAIUsageOutputTokens(int(out)))
		if !u.noLegacy {
			span.SetAttributes(
				attribute.Int64("llm.input_tokens", in),
				attribute.Int64("llm.output_tokens", out),
				attribute.Int64("llm.total_tokens", in+out),
			)
		}
	}
	return metadata.Pairs(
		TrailerInputTokens, strconv.FormatInt(in, 10),
		TrailerOutputTokens, strconv.FormatInt(out, 10),
	)
}

// UsageFromTrailer reads the usage a server of this package reported from a call's trailer
// metadata (grpc.Trailer for unary calls, ClientStream.Trailer for streams). ok is false when
// the trailer carries no usage or a malformed value.
func UsageFromTrailer(md metadata.MD) (u Usage, ok bool) {
	in, okIn := mdInt(md, TrailerInputTokens)
	out, okOut := mdInt(md, TrailerOutputTokens)
	if !okIn || !okOut {
		return Usage{}, false
	}
	return Usage{InputTokens: in, OutputTokens: out}, true
}

func mdInt(md metadata.MD, key string) (int64, bool) {
	v := md.Get(key)
	if len(v) == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
