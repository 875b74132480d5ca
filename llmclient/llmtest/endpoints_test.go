package llmtest_test

import (
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	openai "github.com/sashabaranov/go-openai"
)

func TestEmbeddings(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithEmbeddingDimension(8))
	c := newOpenAI(srv)
	ctx := t.Context()

	one, err := c.CreateEmbeddings(ctx, openai.EmbeddingRequest{Model: openai.SmallEmbedding3, Input: "hello world"})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Data) != 1 || len(one.Data[0].Embedding) != 8 || one.Usage.PromptTokens != 2 || one.Usage.TotalTokens != 2 {
		t.Fatalf("string input: %d items, usage %+v", len(one.Data), one.Usage)
	}
	if string(one.Model) != string(openai.SmallEmbedding3) || one.Object != "list" || one.Data[0].Object != "embedding" {
		t.Errorf("model %q, object %q/%q", one.Model, one.Object, one.Data[0].Object)
	}
	if want := llmtest.Embedding("hello world", 8); !slices.Equal(one.Data[0].Embedding, want) {
		t.Errorf("vector = %v, want Embedding() = %v", one.Data[0].Embedding, want)
	}
	var norm float64
	for _, f := range one.Data[0].Embedding {
		norm += float64(f) * float64(f)
	}
	if math.Abs(norm-1) > 1e-5 {
		t.Errorf("squared norm = %v, want 1", norm)
	}

	many, err := c.CreateEmbeddings(ctx, openai.EmbeddingRequestStrings{
		Model: openai.SmallEmbedding3, Input: []string{"a b c", "hello world", "a b c"}, Dimensions: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(many.Data) != 3 || many.Usage.PromptTokens != 3+2+3 {
		t.Fatalf("array input: %d items, usage %+v", len(many.Data), many.Usage)
	}
	for i, d := range many.Data {
		if d.Index != i || len(d.Embedding) != 4 {
			t.Errorf("item %d: index %d, %d dimensions", i, d.Index, len(d.Embedding))
		}
	}
	if !slices.Equal(many.Data[0].Embedding, many.Data[2].Embedding) || slices.Equal(many.Data[0].Embedding, many.Data[1].Embedding) {
		t.Error("equal inputs must get equal vectors, different inputs different ones")
	}

	tok, err := c.CreateEmbeddings(ctx, openai.EmbeddingRequestTokens{Model: openai.SmallEmbedding3, Input: [][]int{{1, 2, 3}, {4}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Data) != 2 || tok.Usage.PromptTokens != 4 {
		t.Errorf("token input: %d items, usage %+v", len(tok.Data), tok.Usage)
	}

	b64, err := c.CreateEmbeddings(ctx, openai.EmbeddingRequest{
		Model: openai.SmallEmbedding3, Input: "hello world", EncodingFormat: openai.EmbeddingEncodingFormatBase64,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b64.Data[0].Embedding, one.Data[0].Embedding) {
		t.Errorf("base64 vector %v differs from float vector %v", b64.Data[0].Embedding, one.Data[0].Embedding)
	}
}

func TestCompletions(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(3, "x "))
	c := newOpenAI(srv)
	resp, err := c.CreateCompletion(t.Context(), openai.CompletionRequest{Model: openai.GPT3Dot5TurboInstruct, Prompt: "one two three four"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ID != "cmpl-1" || resp.Object != "text_completion" || resp.Model != openai.GPT3Dot5TurboInstruct {
		t.Errorf("id %q, object %q, model %q", resp.ID, resp.Object, resp.Model)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Text != "x x x " || resp.Choices[0].FinishReason != "stop" {
		t.Errorf("choices = %+v", resp.Choices)
	}
	if u := resp.Usage; u == nil || u.PromptTokens != 4 || u.CompletionTokens != 3 || u.TotalTokens != 7 {
		t.Errorf("usage = %+v", u)
	}

	stream, err := c.CreateCompletionStream(t.Context(), openai.CompletionRequest{
		Model: openai.GPT3Dot5TurboInstruct, Prompt: []string{"a", "b c"}, StreamOptions: &openai.StreamOptions{IncludeUsage: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var text strings.Builder
	var last openai.CompletionResponse
	n := 0
	for ; n < 20; n++ {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Choices) > 0 {
			text.WriteString(r.Choices[0].Text)
		}
		last = r
	}
	if n != 5 || text.String() != "x x x " { // 3 content, finish, usage
		t.Errorf("%d events, text %q", n, text.String())
	}
	if len(last.Choices) != 0 || last.Usage == nil || last.Usage.PromptTokens != 3 || last.Usage.CompletionTokens != 3 {
		t.Errorf("last event = %+v, usage %+v", last, last.Usage)
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	c := newOpenAI(srv)
	list, err := c.ListModels(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list.Models {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy != "llmtest" {
			t.Errorf("model %+v", m)
		}
	}
	if !slices.Equal(ids, llmtest.DefaultModels()) {
		t.Errorf("ids = %v, want %v", ids, llmtest.DefaultModels())
	}
	m, err := c.GetModel(t.Context(), "gpt-4o-mini")
	if err != nil || m.ID != "gpt-4o-mini" {
		t.Errorf("GetModel = %+v, %v", m, err)
	}
	_, err = c.GetModel(t.Context(), "nope")
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("GetModel(nope) error = %v", err)
	}
}

func TestWithModelsChecksModel(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithModels("only-this"))
	_, err := newOpenAI(srv).CreateChatCompletion(t.Context(), userChat("hi"))
	var apiErr *openai.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Fatalf("error = %v, want 404 model_not_found", err)
	}
	req := userChat("hi")
	req.Model = "only-this"
	if _, err := newOpenAI(srv).CreateChatCompletion(t.Context(), req); err != nil {
		t.Fatal(err)
	}
}

func TestCountTokens(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]int{
		"": 0, "   ": 0, "hello": 1, "Say hello, please": 3, " a\tb\nc  ": 3, "naïve café": 2,
	} {
		if got := llmtest.CountTokens(s); got != want {
			t.Errorf("CountTokens(%q) = %d, want %d", s, got, want)
		}
	}
	if got := llmtest.ChatPromptTokens(); got != llmtest.ReplyTokens {
		t.Errorf("ChatPromptTokens() = %d", got)
	}
}
