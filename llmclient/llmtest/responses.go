package llmtest

import (
	"encoding/json"
	"strconv"
)

// responses answers POST /v1/responses.
func (x *exchange) responses() {
	req, e := x.s.parseResponses(x.body)
	if e != nil {
		x.writeAPIError(e)
		return
	}
	a, ok := x.generate(req.model, req.inputTokens, req.maxOutput, req.call)
	if !ok {
		return
	}
	r := newResponse(x, req, a)
	if req.stream {
		x.stream(r.plan())
		return
	}
	body := r.final()
	if x.fault.Kind == KindResponseFailed {
		x.fault.Kind = KindNone // the failed response is the whole answer
		body = r.failed(failedError(x.fault))
	}
	x.respondJSON(append(mustJSON(body), '\n'))
}

// A responseAnswer builds the objects and events of one Responses answer.
type responseAnswer struct {
	s      *Server
	base   response // status "in_progress", no output, no usage
	answer answer
	itemID string
	callID string
	usage  responseUsage
}

func newResponse(x *exchange, req responsesRequest, a answer) *responseAnswer {
	seq := strconv.Itoa(x.rec.Seq)
	r := &responseAnswer{
		s: x.s,
		base: response{
			ID: "resp_" + seq, Object: "response", CreatedAt: x.created, Status: "in_progress",
			Instructions: req.instructions, Model: req.model, Output: []any{},
			ParallelToolCalls: true, Temperature: 1, TopP: 1, Truncation: "disabled",
			Text: json.RawMessage(`{"format":{"type":"text"}}`), Tools: req.tools, ToolChoice: req.toolChoice,
			Metadata: map[string]string{},
		},
		answer: a,
		itemID: "msg_" + seq,
		callID: callID(x.rec.Seq),
	}
	if req.maxOutput > 0 {
		r.base.MaxOutputTokens = &req.maxOutput
	}
	if a.call != nil {
		r.itemID = "fc_" + seq
	}
	out := x.s.completionTokens(a)
	r.usage = responseUsage{InputTokens: req.inputTokens, OutputTokens: out, TotalTokens: req.inputTokens + out}
	return r
}

// status returns the status of the finished response: "completed", or "incomplete" if the
// text was cut by max_output_tokens.
func (r *responseAnswer) status() string {
	if r.answer.finish == "length" {
		return "incomplete"
	}
	return "completed"
}

// item returns the answer's output item: a message holding the text, or a function call.
func (r *responseAnswer) item(status, text string) any {
	if c := r.answer.call; c != nil {
		return functionCallItem{ID: r.itemID, Type: "function_call", Status: status, Arguments: text, CallID: r.callID, Name: c.name}
	}
	content := []outputText{}
	if status != "in_progress" {
		content = append(content, newOutputText(text))
	}
	return messageItem{ID: r.itemID, Type: "message", Status: status, Content: content, Role: "assistant"}
}

// whole returns the answer's whole text or arguments.
func (r *responseAnswer) whole() string {
	if r.answer.call != nil {
		return r.answer.call.arguments()
	}
	return r.s.text(r.answer)
}

// final returns the finished response.
func (r *responseAnswer) final() response {
	f := r.base
	f.Status = r.status()
	f.Output = []any{r.item(f.Status, r.whole())}
	f.Usage = &r.usage
	if f.Status == "incomplete" {
		f.IncompleteDetails = &incompleteDetails{Reason: "max_output_tokens"}
	}
	return f
}

// failed returns the response of a KindResponseFailed fault.
func (r *responseAnswer) failed(e *apiError) response {
	f := r.base
	f.Status = "failed"
	f.Error = &responseError{Code: e.codeOrType(), Message: e.Message}
	return f
}

// event returns a stream event of the given type whose JSON build makes from its head.
func event[T any](typ string, build func(h eventHead) T) streamEvent {
	return streamEvent{name: typ, data: func(seq int) []byte {
		return mustJSON(build(eventHead{Type: typ, SequenceNumber: seq}))
	}}
}

// lifecycle returns a response.* event carrying r.
func lifecycle(typ string, r response) streamEvent {
	return event(typ, func(h eventHead) lifecycleEvent { return lifecycleEvent{h, &r} })
}

// outputItemEvent returns a response.output_item.* event carrying item.
func outputItemEvent(typ string, item any) streamEvent {
	return event(typ, func(h eventHead) itemEvent { return itemEvent{h, 0, item} })
}

// plan returns the events of the streamed answer.
func (r *responseAnswer) plan() *streamPlan {
	final := r.final()
	p := &streamPlan{
		countEvents: true,
		head: []streamEvent{
			lifecycle("response.created", r.base),
			lifecycle("response.in_progress", r.base),
			outputItemEvent("response.output_item.added", r.item("in_progress", "")),
		},
		terminal:   []streamEvent{lifecycle("response."+final.Status, final)},
		errorEvent: errorEventFor,
		failed:     func(e *apiError) streamEvent { return lifecycle("response.failed", r.failed(e)) },
	}
	if r.answer.call != nil {
		r.planCall(p, final)
	} else {
		r.planText(p, final)
	}
	return p
}

// planCall adds the events of a function call to p: argument deltas, then
// response.function_call_arguments.done and response.output_item.done.
func (r *responseAnswer) planCall(p *streamPlan, final response) {
	c, whole := r.answer.call, r.whole()
	args := func(s string) streamEvent {
		return event("response.function_call_arguments.delta", func(h eventHead) argumentsEvent {
			return argumentsEvent{eventHead: h, ItemID: r.itemID, Delta: &s}
		})
	}
	p.outputs = len(c.pieces)
	p.output = func(i int) streamEvent { return args(c.pieces[i]) }
	p.padded = func(n int) streamEvent { return args(padSpaces(n)) }
	p.closing = []streamEvent{
		event("response.function_call_arguments.done", func(h eventHead) argumentsEvent {
			return argumentsEvent{eventHead: h, ItemID: r.itemID, Arguments: &whole}
		}),
		outputItemEvent("response.output_item.done", final.Output[0]),
	}
}

// planText adds the events of a text answer to p: response.content_part.added, text deltas,
// then response.output_text.done, response.content_part.done and response.output_item.done.
func (r *responseAnswer) planText(p *streamPlan, final response) {
	whole, chunk := r.whole(), r.s.cfg.chunkText
	part := func(typ, text string) streamEvent {
		return event(typ, func(h eventHead) partEvent { return partEvent{h, r.itemID, 0, 0, newOutputText(text)} })
	}
	text := func(typ string, delta, text *string) streamEvent {
		return event(typ, func(h eventHead) textEvent {
			return textEvent{eventHead: h, ItemID: r.itemID, Delta: delta, Text: text, Logprobs: []json.RawMessage{}}
		})
	}
	p.head = append(p.head, part("response.content_part.added", ""))
	p.outputs = r.answer.chunks
	p.output = func(int) streamEvent { return text("response.output_text.delta", &chunk, nil) }
	p.padded = func(n int) streamEvent {
		pad := padText(n)
		return text("response.output_text.delta", &pad, nil)
	}
	p.closing = []streamEvent{
		text("response.output_text.done", nil, &whole),
		part("response.content_part.done", whole),
		outputItemEvent("response.output_item.done", final.Output[0]),
	}
}

// errorEventFor is the "error" event that carries e in a Responses stream.
func errorEventFor(e *apiError) streamEvent {
	return streamEvent{name: "error", data: func(seq int) []byte {
		return mustJSON(errorStreamEvent{Type: "error", Code: e.codeOrType(), Message: e.Message, Param: e.Param, SequenceNumber: seq})
	}}
}

// The Responses API's objects, as the server writes them.

type response struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *responseError     `json:"error"`
	IncompleteDetails  *incompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []any              `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Reasoning          reasoning          `json:"reasoning"`
	Store              bool               `json:"store"`
	Temperature        float64            `json:"temperature"`
	Text               json.RawMessage    `json:"text"`
	ToolChoice         json.RawMessage    `json:"tool_choice"`
	Tools              json.RawMessage    `json:"tools"`
	TopP               float64            `json:"top_p"`
	Truncation         string             `json:"truncation"`
	Usage              *responseUsage     `json:"usage"`
	User               *string            `json:"user"`
	Metadata           map[string]string  `json:"metadata"`
}

type responseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type incompleteDetails struct {
	Reason string `json:"reason"`
}

type reasoning struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

type responseUsage struct {
	InputTokens         int                `json:"input_tokens"`
	InputTokensDetails  inputTokenDetails  `json:"input_tokens_details"`
	OutputTokens        int                `json:"output_tokens"`
	OutputTokensDetails outputTokenDetails `json:"output_tokens_details"`
	TotalTokens         int                `json:"total_tokens"`
}

type inputTokenDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

type outputTokenDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

type messageItem struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Status  string       `json:"status"`
	Content []outputText `json:"content"`
	Role    string       `json:"role"`
}

type outputText struct {
	Type        string            `json:"type"`
	Annotations []json.RawMessage `json:"annotations"`
	Logprobs    []json.RawMessage `json:"logprobs"`
	Text        string            `json:"text"`
}

func newOutputText(text string) outputText {
	return outputText{Type: "output_text", Annotations: []json.RawMessage{}, Logprobs: []json.RawMessage{}, Text: text}
}

type functionCallItem struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	Arguments string `json:"arguments"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
}

// eventHead opens every Responses stream event.
type eventHead struct {
	Type           string `json:"type"`
	SequenceNumber int    `json:"sequence_number"`
}

type lifecycleEvent struct {
	eventHead
	Response *response `json:"response"`
}

type itemEvent struct {
	eventHead
	OutputIndex int `json:"output_index"`
	Item        any `json:"item"`
}

type partEvent struct {
	eventHead
	ItemID       string     `json:"item_id"`
	OutputIndex  int        `json:"output_index"`
	ContentIndex int        `json:"content_index"`
	Part         outputText `json:"part"`
}

type textEvent struct {
	eventHead
	ItemID       string            `json:"item_id"`
	OutputIndex  int               `json:"output_index"`
	ContentIndex int               `json:"content_index"`
	Delta        *string           `json:"delta,omitempty"`
	Text         *string           `json:"text,omitempty"`
	Logprobs     []json.RawMessage `json:"logprobs"`
}

type argumentsEvent struct {
	eventHead
	ItemID      string  `json:"item_id"`
	OutputIndex int     `json:"output_index"`
	Delta       *string `json:"delta,omitempty"`
	Arguments   *string `json:"arguments,omitempty"`
}

type errorStreamEvent struct {
	Type           string  `json:"type"`
	Code           string  `json:"code"`
	Message        string  `json:"message"`
	Param          *string `json:"param"`
	SequenceNumber int     `json:"sequence_number"`
}
