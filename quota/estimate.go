package quota

import "github.com/infermesh/infermesh/internal/llmwire"

// EstimateTokens estimates the tokens an OpenAI-style request body will use, for
// [Limiter.Reserve]: its length in bytes divided by 4 (the usual rule of thumb for English
// text and JSON) for the prompt, plus the largest of its top-level max_tokens,
// max_completion_tokens and max_output_tokens (Responses API) for the answer, or plus
// defaultMax when it has none of them (a negative defaultMax counts as 0). A body that is not
// a JSON object counts by its length alone, plus defaultMax.
func EstimateTokens(body []byte, defaultMax int) int {
	answer := max(defaultMax, 0)
	if r, err := llmwire.ParseRequest(body); err == nil && r.MaxTokens >= 0 {
		answer = int(min(r.MaxTokens, maxCount))
	}
	return len(body)/4 + answer
}
