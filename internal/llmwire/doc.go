// Package llmwire is the one place that knows the OpenAI wire format: which operation a
// path names, what a request body asks for, what a response body or a stream event
// carries (an error object, usage, the model, finish reasons, output) and where a stream
// ends. llmclient, fallback and tracing ask it instead of reading JSON themselves.
//
// It reads JSON with github.com/tidwall/gjson and edits it with github.com/tidwall/sjson,
// both well kept and already in the official openai-go SDK's dependency graph: the fields
// it needs are a handful among many, so it walks each object once and keeps what it needs
// rather than decoding whole documents into structs.
//
// # Streams and their commit point
//
// Chat and legacy completion streams are "data:" events of chunks ended by "data:
// [DONE]". Responses API streams are "event:"/"data:" pairs whose JSON has a "type" and
// a "sequence_number"; they end with response.completed, response.incomplete or
// response.failed, and have no [DONE]. [ParseEvent] reads one event of either kind into
// an [Event] whose Output field defines, in one place, the commit point of every stream
// kind: the first event that carries output to the caller (text, refusal, tool-call or
// function-argument deltas, reasoning text). Events before it (a role-only chunk,
// response.created, response.in_progress, response.queued, progress events) carry no
// output; Terminal marks the event that ends a stream properly.
package llmwire
