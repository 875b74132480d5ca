// Package fallback serves an LLM call from somewhere else when the primary upstream cannot.
//
// A [Chain] holds ordered [Target]s and is consulted by package llmclient after the
// primary has failed in a way that warrants it (see [Chain.Triggered]): the circuit is
// open, retries ran out on a retryable error, the mesh reports no healthy upstream, the
// first token never came, or too little of the deadline is left to try the primary. Each
// target is tried in order until one answers; the answer carries the header
// [HeaderFallback] naming the target so callers can tell it apart from a primary answer.
//
// Targets:
//   - [NewEndpoint]: another OpenAI-compatible server, typically a local model (Ollama,
//     llama.cpp's server, vLLM). The base URL, the auth header and the JSON "model" field
//     are rewritten; the body is otherwise sent unchanged.
//   - [Func]: an in-process function that writes the reply text.
//   - [NewCache]: the last good reply to the same canonical request, within a TTL and a
//     size bound, marked degraded with [HeaderDegraded] and an Age header.
//   - [Static]: a fixed reply, the last resort.
//
// Local targets ([Func], [Static], the cache) answer chat and legacy completion calls in
// the OpenAI wire format, streamed or not, so an unmodified OpenAI client decodes them.
package fallback
