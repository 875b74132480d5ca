package llmtest_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/llmclient/llmtest"
	openai "github.com/sashabaranov/go-openai"
)

func TestChatNonStreamed(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(3, "fine thanks "))
	c := newOpenAI(srv)
	req := openai.ChatCompletionRequest{
		Model: openai.GPT4oMini,
		Messages: []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleSystem, Content: "Be brief."},
			{Role: openai.ChatMessageRoleUser, Content: "How are you today?"},
		},
	}
	resp, err := c.CreateChatCompletion(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	wantPrompt := llmtest.ChatPromptTokens("Be brief.", "How are you today?")
	if wantPrompt != 3+(3+2)+(3+4) {
		t.Fatalf("ChatPromptTokens = %d, want 15", wantPrompt)
	}
	want := openai.Usage{PromptTokens: wantPrompt, CompletionTokens: 6, TotalTokens: wantPrompt + 6}
	got := resp.Usage
	if got.PromptTokens != want.PromptTokens || got.CompletionTokens != want.CompletionTokens || got.TotalTokens != want.TotalTokens {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
	if resp.ID != "chatcmpl-1" || resp.Object != "chat.completion" || resp.Model != openai.GPT4oMini {
		t.Errorf("id, object, model = %q, %q, %q", resp.ID, resp.Object, resp.Model)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("choices = %d, want 1", len(resp.Choices))
	}
	ch := resp.Choices[0]
	if ch.Message.Role != "assistant" || ch.Message.Content != "fine thanks fine thanks fine thanks " || ch.FinishReason != openai.FinishReasonStop {
		t.Errorf("choice = %+v", ch)
	}
	if id := resp.Header().Get("X-Request-Id"); id != "req_1" {
		t.Errorf("x-request-id = %q, want req_1", id)
	}
	// A second request gets the next id.
	resp, err = c.CreateChatCompletion(t.Context(), req)
	if err != nil || resp.ID != "chatcmpl-2" {
		t.Errorf("second call: id %q, err %v", resp.ID, err)
	}
}

func TestChatMaxTokensTruncates(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(5, "word "))
	req := userChat("hi")
	req.MaxCompletionTokens = 2
	resp, err := newOpenAI(srv).CreateChatCompletion(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "word word " || resp.Choices[0].FinishReason != openai.FinishReasonLength || resp.Usage.CompletionTokens != 2 {
		t.Errorf("content %q, finish %q, completion tokens %d", resp.Choices[0].Message.Content, resp.Choices[0].FinishReason, resp.Usage.CompletionTokens)
	}
}

func TestChatStreamedWithUsage(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(4, "tok "))
	req := userChat("Tell me a story")
	req.Model = "my-model"
	req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	stream, err := newOpenAI(srv).CreateChatCompletionStream(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var chunks []openai.ChatCompletionStreamResponse
	for i := 0; i < 20; i++ {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv after %d chunks: %v", len(chunks), err)
		}
		chunks = append(chunks, c)
	}
	// role, 4 content, finish, usage
	if len(chunks) != 7 {
		t.Fatalf("got %d chunks, want 7: %+v", len(chunks), chunks)
	}
	if d := chunks[0].Choices[0].Delta; d.Role != "assistant" || d.Content != "" {
		t.Errorf("first chunk delta = %+v, want the role", d)
	}
	var text strings.Builder
	for i, c := range chunks[:6] {
		if c.Usage != nil {
			t.Errorf("chunk %d has usage %+v, want null", i, c.Usage)
		}
		if c.ID != "chatcmpl-1" || c.Model != "my-model" || c.Object != "chat.completion.chunk" {
			t.Errorf("chunk %d: id %q, model %q, object %q", i, c.ID, c.Model, c.Object)
		}
		text.WriteString(c.Choices[0].Delta.Content)
	}
	if text.String() != "tok tok tok tok " {
		t.Errorf("text = %q", text.String())
	}
	if fr := chunks[5].Choices[0].FinishReason; fr != openai.FinishReasonStop {
		t.Errorf("finish reason = %q", fr)
	}
	last := chunks[6]
	if len(last.Choices) != 0 || last.Usage == nil {
		t.Fatalf("last chunk = %+v, want usage only", last)
	}
	wantPrompt := llmtest.ChatPromptTokens("Tell me a story")
	if u := *last.Usage; u.PromptTokens != wantPrompt || u.CompletionTokens != 4 || u.TotalTokens != wantPrompt+4 {
		t.Errorf("usage = %+v, want prompt %d, completion 4", u, wantPrompt)
	}
}

func TestChatStreamWireFormat(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithChunks(2, "a "))
	for _, tc := range []struct {
		name, body string
		events     int
		usageNull  bool
	}{
		{"without usage", `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`, 5, false},
		{"with usage", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`, 6, true},
	} {
		r := post(t, srv, llmtest.PathChatCompletions, tc.body)
		if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
			t.Fatalf("%s: status %d, content-type %q", tc.name, r.status, r.header.Get("Content-Type"))
		}
		if !strings.HasSuffix(r.body, "\n\ndata: [DONE]\n\n") {
			t.Errorf("%s: body does not end with [DONE]: %q", tc.name, r.body)
		}
		data := sseData(r.body)
		if len(data) != tc.events {
			t.Fatalf("%s: %d events, want %d: %q", tc.name, len(data), tc.events, r.body)
		}
		for i, d := range data[:len(data)-1] {
			if strings.HasPrefix(d, "[") {
				continue
			}
			v := decode(t, d)
			u, has := v["usage"]
			switch {
			case !tc.usageNull && has:
				t.Errorf("%s: event %d has a usage field: %s", tc.name, i, d)
			case tc.usageNull && i < len(data)-2 && (!has || u != nil):
				t.Errorf("%s: event %d usage = %v, want null", tc.name, i, u)
			}
		}
	}
}
