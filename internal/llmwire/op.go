package llmwire

import "strings"

// Op is the API operation a request path names.
type Op int

// The operations llmwire knows; every other path is [OpOther].
const (
	OpOther       Op = iota
	OpChat           // /chat/completions
	OpCompletions    // /completions (legacy text completions)
	OpEmbeddings     // /embeddings
	OpResponses      // /responses (the Responses API)
)

// opPaths are the operations' paths below the API version, longest first so that
// "/chat/completions" is not taken for "/completions".
var opPaths = [...]struct {
	path string
	op   Op
}{
	{"/chat/completions", OpChat},
	{"/completions", OpCompletions},
	{"/embeddings", OpEmbeddings},
	{"/responses", OpResponses},
}

// OpOf returns the operation of a request path: "/v1/chat/completions", Azure's
// "/openai/deployments/{d}/chat/completions" and any other prefix all name OpChat.
func OpOf(path string) Op {
	path = strings.TrimSuffix(path, "/")
	for _, p := range opPaths {
		if strings.HasSuffix(path, p.path) {
			return p.op
		}
	}
	return OpOther
}

// OperationPath returns the path below the API version prefix: "/chat/completions" for
// "/v1/chat/completions" and for Azure's "/openai/deployments/d/chat/completions". A
// path of no known operation is cut after "/v1" when it has one, and kept otherwise.
func OperationPath(path string) string {
	if op := OpOf(path); op != OpOther {
		return opPaths[op-1].path
	}
	if i := strings.Index(path, "/v1/"); i >= 0 {
		return path[i+3:]
	}
	return path
}

// Name is the operation's gen_ai.operation.name: "chat" (the Responses API included:
// it is a conversation API), "text_completion" or "embeddings"; for OpOther the
// operation path with dots, such as "models" or "audio.speech".
func (o Op) Name(path string) string {
	switch o {
	case OpChat, OpResponses:
		return "chat"
	case OpCompletions:
		return "text_completion"
	case OpEmbeddings:
		return "embeddings"
	}
	return strings.Trim(strings.ReplaceAll(OperationPath(path), "/", "."), ".")
}

// Replayable reports whether a stored answer to this operation may be served again for
// the same request: the completion-style operations. A create (a batch, a file, a fine
// tune) is never replayed as if it had been made again.
func (o Op) Replayable() bool { return o != OpOther }

// Streams reports whether the operation answers "stream": true with a stream of events.
func (o Op) Streams() bool { return o == OpChat || o == OpCompletions || o == OpResponses }
