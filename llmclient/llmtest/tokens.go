package llmtest

import "unicode"

// Token accounting. The server does not run a real tokenizer: it counts words, so that tests
// can compute the usage they expect by hand.
//
//	CountTokens(s)    = the number of whitespace-separated words in s
//	prompt_tokens     = ReplyTokens + Σ over messages (MessageTokens + CountTokens(text of the message))   (chat)
//	input_tokens      = ReplyTokens + Σ over instructions and input items (MessageTokens + CountTokens(text))  (responses)
//	prompt_tokens     = Σ CountTokens(prompt or input string), or the length of each token array    (completions, embeddings)
//	completion_tokens = chunks × CountTokens(chunk text), or one per argument piece of a tool call  (output_tokens for responses)
//	total_tokens      = prompt_tokens + completion_tokens
//
// The text of a chat message is its string content, or the sum over the "text" fields of its
// content parts; other parts (images, audio), names and tool calls count nothing. A
// Responses input string is one message; the instructions, when given, are one more; the
// text of an input item is a message's content (as for chat), a function call's arguments
// or a function call output's output, and other items count MessageTokens alone. So the
// input_tokens of {"instructions": i, "input": s} are ChatPromptTokens(i, s), and of
// {"input": s} ChatPromptTokens(s).
const (
	// MessageTokens is the fixed cost of every chat message, added to the words of its text.
	MessageTokens = 3
	// ReplyTokens is the fixed cost of priming the assistant's reply, added once per chat request.
	ReplyTokens = 3
)

// CountTokens returns the number of tokens the server counts for s: the number of
// whitespace-separated words in s (as [strings.Fields] splits them), so CountTokens("Say hello, please") is 3 and
// CountTokens("") is 0.
func CountTokens(s string) int {
	n := 0
	inWord := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			inWord = false
			continue
		}
		if !inWord {
			n++
			inWord = true
		}
	}
	return n
}

// ChatPromptTokens returns the prompt_tokens the server reports for a chat request whose
// messages have the given texts: [ReplyTokens] + Σ ([MessageTokens] + [CountTokens](text)).
// It is also the input_tokens of a Responses request whose instructions and input items have
// those texts.
func ChatPromptTokens(texts ...string) int {
	n := ReplyTokens
	for _, t := range texts {
		n += MessageTokens + CountTokens(t)
	}
	return n
}
