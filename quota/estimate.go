package quota

import (
	"bytes"
	"encoding/json"
)

// EstimateTokens estimates the tokens an OpenAI-style request body will use, for
// [Limiter.Reserve]: its length in bytes divided by 4 (the usual rule of thumb for English
// text and JSON) for the prompt, plus the largest of its top-level max_tokens,
// max_completion_tokens and max_output_tokens (Responses API) for the answer, or plus
// defaultMax when it has none of them (a negative defaultMax counts as 0). A body that is not
// a JSON object counts by its length alone, plus defaultMax.
//
// It reads only the top level of the object and skips nested values without decoding them,
// ten to twenty times faster than encoding/json (BenchmarkEstimateTokens).
func EstimateTokens(body []byte, defaultMax int) int {
	answer, ok := maxAnswerTokens(body)
	if !ok {
		answer = max(defaultMax, 0)
	}
	return len(body)/4 + answer
}

// maxAnswerTokens returns the largest non-negative integer value among the top-level members
// max_tokens, max_completion_tokens and max_output_tokens of the JSON object in b (for a
// member given twice, the last, as encoding/json decodes it), clamped at maxCount. It
// stops at the first malformed byte with what it found before.
func maxAnswerTokens(b []byte) (n int, found bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	var vals [3]int // the last value of each member; -1 none
	vals[0], vals[1], vals[2] = -1, -1, -1
	for i = skipSpace(b, i+1); i < len(b) && b[i] == '"'; i = skipSpace(b, i+1) {
		end := stringEnd(b, i)
		if end < 0 {
			break
		}
		name := b[i+1 : end]
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			break
		}
		i = skipSpace(b, i+1)
		next := valueEnd(b, i)
		if next < 0 {
			break
		}
		if m := answerMember(name); m >= 0 {
			vals[m] = parseCount(string(b[i:next]))
		}
		if i = skipSpace(b, next); i >= len(b) || b[i] != ',' {
			break
		}
	}
	n = -1
	for _, v := range vals {
		n = max(n, v)
	}
	return max(n, 0), n >= 0
}

// answerMember returns which of max_tokens, max_completion_tokens and max_output_tokens the
// raw member name is (0, 1, 2), or -1.
func answerMember(raw []byte) int {
	name := string(raw) // the comparisons below do not allocate
	if bytes.IndexByte(raw, '\\') >= 0 {
		var s string // escaped: a rare spelling, decoded the slow way
		if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s) != nil {
			return -1
		}
		name = s
	}
	switch name {
	case "max_tokens":
		return 0
	case "max_completion_tokens":
		return 1
	case "max_output_tokens":
		return 2
	}
	return -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index of the quote that closes the string opening at b[open], or -1.
func stringEnd(b []byte, open int) int {
	for i := open + 1; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		i += j
		k := i // an odd run of backslashes before the quote escapes it
		for b[k-1] == '\\' {
			k--
		}
		if (i-k)%2 == 0 {
			return i
		}
	}
	return -1
}

// valueEnd returns the index just past the JSON value starting at b[i], found by counting
// brackets outside strings (the value is not validated), or -1 when b ends first.
func valueEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			if i = stringEnd(b, i); i < 0 {
				return -1
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	if depth == 0 {
		return i
	}
	return -1
}
