package chaos_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	openaigo "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/responses"
	openai "github.com/sashabaranov/go-openai"

	"github.com/infermesh/infermesh/fallback"
)

// reply is what one logical call gave its caller, whichever SDK made it.
type reply struct {
	err    error
	header http.Header // the response's headers, when one came back
	// sources are the upstream requests (their arrival numbers on the server that
	// answered) whose ids the caller saw: a stream's every chunk or event, or the answer.
	sources []int
	// firstOutput is the upstream request whose output reached the caller first; 0 when
	// none did.
	firstOutput int
	outputs     int // output chunks or events the caller received
	// end is how the answer ended as the caller saw it: a finish reason (chat), a final
	// status ("completed", "incomplete", "failed") or terminal event type (Responses);
	// "" when it ended without one.
	end   string
	sdk   string    // the SDK that made the call
	start time.Time // when the call began
	took  time.Duration
}

// servedBy names the fallback target that served the call, or "".
func (r reply) servedBy() string { return r.header.Get(fallback.HeaderFallback) }

// complete reports an answer that ended as a good answer ends.
func (r reply) complete() bool {
	switch r.end {
	case "stop", "length", "completed", "incomplete", "response.completed", "response.incomplete":
		return true
	}
	return false
}

// failedResponse reports a Responses answer that ended in the upstream's own
// response.failed: a failure delivered in the SDK's own types.
func (r reply) failedResponse() bool { return r.end == "failed" || r.end == "response.failed" }

// source records that the caller saw id (chatcmpl-N, resp_N, msg_N, ...).
func (r *reply) source(id string, output bool) {
	i := strings.LastIndexAny(id, "-_")
	n, err := strconv.Atoi(id[i+1:])
	if id == "" || err != nil {
		return
	}
	if output {
		r.outputs++
		if r.firstOutput == 0 {
			r.firstOutput = n
		}
	}
	for _, s := range r.sources {
		if s == n {
			return
		}
	}
	r.sources = append(r.sources, n)
}

// tagKey carries a logical call's id in its context; tagger sends it upstream in the
// callIDKey header, so that every attempt and fallback of the call can be told apart.
type tagKey struct{}

func withCallID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, tagKey{}, id)
}

type tagger struct{ next http.RoundTripper }

func (t tagger) RoundTrip(req *http.Request) (*http.Response, error) {
	if id, ok := req.Context().Value(tagKey{}).(string); ok {
		req = req.Clone(req.Context())
		req.Header.Set(callIDKey, id)
	}
	return t.next.RoundTrip(req)
}

// clients are the unmodified SDKs of a rig, both on one infermesh HTTP client.
type clients struct {
	goOpenAI *openai.Client
	openAIGo openaigo.Client
}

// newClients points go-openai and openai-go at baseURL (without /v1) through hc.
// openai-go keeps its default retries, with short waits so that a burst fits in the
// call deadline; go-openai has no retries.
func newClients(baseURL string, hc *http.Client, opts ...option.RequestOption) clients {
	oc := openai.DefaultConfig("sk-chaos-secret-0000")
	oc.BaseURL = baseURL + "/v1"
	oc.HTTPClient = hc
	opts = append([]option.RequestOption{option.WithHTTPClient(hc), option.WithBaseURL(baseURL + "/v1"),
		option.WithAPIKey("sk-chaos-secret-0000")}, opts...)
	return clients{goOpenAI: openai.NewClientWithConfig(oc), openAIGo: openaigo.NewClient(opts...)}
}

// callKind is one column of the matrix: an API, streamed or not, made through either SDK.
type callKind struct {
	name               string
	route              string // the llmclient route the call takes
	stream             bool
	goOpenAI, openAIGo func(ctx context.Context, c clients) reply
}

func callKinds() []callKind {
	return []callKind{
		{"chat", "chat", false, goChat, sdkChat},
		{"chat-stream", "chat", true, goChatStream, sdkChatStream},
		{"responses", "responses", false, goResponses, sdkResponses},
		{"responses-stream", "responses", true, goResponsesStream, sdkResponsesStream},
	}
}

// sdk returns the call through go-openai for even n, through openai-go for odd n, and
// the SDK's name.
func (ck callKind) sdk(n int) (func(ctx context.Context, c clients) reply, string) {
	if n%2 == 0 {
		return ck.goOpenAI, "go-openai"
	}
	return ck.openAIGo, "openai-go"
}

// maxEvents bounds every read loop; a healthy answer has a few dozen.
const maxEvents = 10_000

var errTooManyEvents = errors.New("chaos: more events than any answer has")

// goRecv reads a go-openai stream to its end, handing each value to each. go-openai
// reports the end of a Responses stream as io.EOF: such a stream has no [DONE].
func goRecv[T any](recv func() (T, error), each func(T)) error {
	for range maxEvents {
		v, err := recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		each(v)
	}
	return errTooManyEvents
}

// sdkNext reads an openai-go stream to its end, handing each value to each.
func sdkNext[T any](s *ssestream.Stream[T], each func(T)) error {
	for range maxEvents {
		if !s.Next() {
			return s.Err()
		}
		each(s.Current())
	}
	return errTooManyEvents
}

// chunk records one choice of a chat chunk.
func (r *reply) chunk(id string, output bool, finish string) {
	if finish != "" {
		r.end = finish
	}
	r.source(id, output)
}

// responseEvent records one Responses stream event: its output, and its type when it
// is a terminal one.
func (r *reply) responseEvent(typ, itemID, delta, responseID string) {
	switch typ {
	case "response.output_text.delta", "response.function_call_arguments.delta", "response.refusal.delta":
		r.source(itemID, delta != "")
	case "response.completed", "response.incomplete", "response.failed":
		r.end = typ
	}
	r.source(responseID, false)
}

func goChatRequest(stream bool) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "chaos"}},
		Stream:   stream,
	}
}

func goChat(ctx context.Context, c clients) reply {
	resp, err := c.goOpenAI.CreateChatCompletion(ctx, goChatRequest(false))
	r := reply{err: err, header: resp.Header()}
	for _, ch := range resp.Choices {
		r.chunk(resp.ID, err == nil, string(ch.FinishReason))
	}
	return r
}

func goChatStream(ctx context.Context, c clients) reply {
	s, err := c.goOpenAI.CreateChatCompletionStream(ctx, goChatRequest(true))
	if err != nil {
		return reply{err: err}
	}
	defer s.Close()
	r := reply{header: s.Header()}
	r.err = goRecv(s.Recv, func(chunk openai.ChatCompletionStreamResponse) {
		for _, ch := range chunk.Choices {
			r.chunk(chunk.ID, ch.Delta.Content != "" || len(ch.Delta.ToolCalls) > 0, string(ch.FinishReason))
		}
	})
	return r
}

func goResponseRequest() openai.CreateResponseRequest {
	return openai.CreateResponseRequest{Model: "gpt-4o-mini", Input: "chaos"}
}

func goResponses(ctx context.Context, c clients) reply {
	resp, err := c.goOpenAI.CreateResponse(ctx, goResponseRequest())
	r := reply{err: err, header: resp.Header(), end: string(resp.Status)}
	r.source(resp.ID, err == nil && resp.GetOutputText() != "")
	return r
}

func goResponsesStream(ctx context.Context, c clients) reply {
	s, err := c.goOpenAI.CreateResponseStream(ctx, goResponseRequest())
	if err != nil {
		return reply{err: err}
	}
	defer s.Close()
	r := reply{header: s.Header()}
	r.err = goRecv(s.Recv, func(ev openai.ResponseStreamEvent) {
		id := ""
		if ev.Response != nil {
			id = ev.Response.ID
		}
		r.responseEvent(string(ev.Type), ev.ItemID, ev.Delta, id)
	})
	return r
}

func sdkChatParams() openaigo.ChatCompletionNewParams {
	return openaigo.ChatCompletionNewParams{Model: "gpt-4o-mini",
		Messages: []openaigo.ChatCompletionMessageParamUnion{openaigo.UserMessage("chaos")}}
}

func sdkChat(ctx context.Context, c clients) reply {
	var raw *http.Response
	resp, err := c.openAIGo.Chat.Completions.New(ctx, sdkChatParams(), option.WithResponseInto(&raw))
	r := reply{err: err, header: headerOf(raw)}
	if err == nil {
		for _, ch := range resp.Choices {
			r.chunk(resp.ID, true, ch.FinishReason)
		}
	}
	return r
}

func sdkChatStream(ctx context.Context, c clients) reply {
	var raw *http.Response
	s := c.openAIGo.Chat.Completions.NewStreaming(ctx, sdkChatParams(), option.WithResponseInto(&raw))
	defer s.Close()
	r := reply{header: headerOf(raw)}
	r.err = sdkNext(s, func(chunk openaigo.ChatCompletionChunk) {
		for _, ch := range chunk.Choices {
			r.chunk(chunk.ID, ch.Delta.Content != "" || len(ch.Delta.ToolCalls) > 0, ch.FinishReason)
		}
	})
	return r
}

func sdkResponseParams() responses.ResponseNewParams {
	return responses.ResponseNewParams{Model: "gpt-4o-mini",
		Input: responses.ResponseNewParamsInputUnion{OfString: openaigo.String("chaos")}}
}

func sdkResponses(ctx context.Context, c clients) reply {
	var raw *http.Response
	resp, err := c.openAIGo.Responses.New(ctx, sdkResponseParams(), option.WithResponseInto(&raw))
	r := reply{err: err, header: headerOf(raw)}
	if err == nil {
		r.end = string(resp.Status)
		r.source(resp.ID, resp.OutputText() != "")
	}
	return r
}

func sdkResponsesStream(ctx context.Context, c clients) reply {
	var raw *http.Response
	s := c.openAIGo.Responses.NewStreaming(ctx, sdkResponseParams(), option.WithResponseInto(&raw))
	defer s.Close()
	r := reply{header: headerOf(raw)}
	r.err = sdkNext(s, func(ev responses.ResponseStreamEventUnion) {
		r.responseEvent(ev.Type, ev.ItemID, ev.Delta, ev.Response.ID)
	})
	return r
}

func headerOf(resp *http.Response) http.Header {
	if resp == nil {
		return http.Header{}
	}
	return resp.Header
}
