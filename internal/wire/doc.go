// Package wire peeks into OpenAI-style JSON without allocating.
//
// [Parse] scans one JSON object (a streamed chat.completion.chunk, a full
// chat.completion or completion response, an embeddings response, or an error
// body) with a small hand-written scanner that validates the JSON and skips
// every value it does not need. It fills a caller-owned [Fields] with what
// stream semantics and tracing need: id, model and object; usage (prompt_tokens,
// completion_tokens and total_tokens, or the input_tokens / output_tokens
// spellings) and whether usage was absent or null; the number of choices; the
// finish reasons; whether the object carries deliverable content (see
// [Fields.HasContent]) as opposed to a role-only chunk; and a top-level error
// object.
//
// String values are reported as sub-slices of the input holding the raw JSON
// string contents, escapes not decoded; they are valid as long as the input is.
// [AppendUnquoted] and [Unquote] decode them when needed (a cold path).
//
// For the chunks of one stream, a [Parser] gives the same results faster: it
// skips the bytes every chunk repeats.
//
// Malformed JSON yields a [*SyntaxError] with the byte offset of the problem.
package wire
