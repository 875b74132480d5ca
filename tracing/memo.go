package tracing

import (
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// memo is a bounded map that readers use without a lock: a store replaces
// the map instead of changing it. Calls repeat a few low-cardinality values
// (operation, provider, model, server), and what is built from them (span
// names, attribute slices, metric attribute sets) costs more per call than a
// lookup. Past its limit a memo keeps nothing new and callers build per call.
type memo[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex // serializes stores
}

func (c *memo[K, V]) load(k K) (v V, ok bool) {
	if m := c.m.Load(); m != nil {
		v, ok = (*m)[k]
	}
	return v, ok
}

// store keeps v under k unless k is taken (it then returns the kept value, so
// that concurrent builders share one), the memo holds limit entries, or take
// (when not nil) refuses the room.
func (c *memo[K, V]) store(k K, v V, limit int, take func() bool) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[K]V
	if p := c.m.Load(); p != nil {
		old = *p
	}
	if kept, ok := old[k]; ok {
		return kept
	}
	if len(old) >= limit || (take != nil && !take()) {
		return v
	}
	m := make(map[K]V, len(old)+1)
	maps.Copy(m, old)
	m[k] = v
	c.m.Store(&m)
	return v
}

// Memo limits. Each store copies the map, so a full memo has cost
// limit²/2 insertions once, in exchange for lock-free reads.
const (
	maxShapes     = 1024 // per Instrumenter
	maxNames      = 1024 // interned response models and finish reasons
	maxSeries     = 16   // response models per shape
	maxErrorTypes = 32   // error.type values per series
	// maxSets bounds the metric attribute sets one Instrumenter keeps in all
	// its series together; past it, they are built per call.
	maxSets = 4096
)

// shapeKey is what the call span's start and the metric attributes of a call
// depend on, apart from the response model.
type shapeKey struct {
	op, provider, model, addr string
	port                      int
	stream                    bool
	kind                      trace.SpanKind
}

// shape is what the calls of one shapeKey share. Its slices are read-only:
// the SDK copies span start attributes and reads record options.
type shape struct {
	key    shapeKey
	name   string                  // call span name
	start  []trace.SpanStartOption // call span kind and attributes
	first  []trace.SpanStartOption // first attempt span's (retries wait anyway)
	series memo[string, *series]   // by response model
	sets   *atomic.Int64           // the Instrumenter's count of kept attribute sets
}

// takeSets returns a store's take function that reserves n attribute sets of
// the Instrumenter's maxSets.
func takeSets(sets *atomic.Int64, n int64) func() bool {
	return func() bool {
		if sets.Add(n) > maxSets {
			sets.Add(-n)
			return false
		}
		return true
	}
}

func (in *Instrumenter) shape(k shapeKey) *shape {
	if sh, ok := in.shapes.load(k); ok {
		return sh
	}
	// Memos outlive calls: keep copies, not strings that may share the
	// memory of a request.
	k.op, k.provider, k.model, k.addr = strings.Clone(k.op), strings.Clone(k.provider), strings.Clone(k.model), strings.Clone(k.addr)
	sh := newShape(k)
	sh.sets = &in.sets
	return in.shapes.store(k, sh, maxShapes, nil)
}

func newShape(k shapeKey) *shape {
	attrs := []attribute.KeyValue{
		semconv.GenAIOperationNameKey.String(k.op),
		semconv.GenAIProviderNameKey.String(k.provider),
		semconv.GenAIRequestStreamKey.Bool(k.stream),
	}
	if k.model != "" {
		attrs = append(attrs, semconv.GenAIRequestModelKey.String(k.model))
	}
	attrs = appendServer(attrs, k.addr, k.port)
	return &shape{
		key:   k,
		name:  spanName(k.op, k.model),
		start: []trace.SpanStartOption{trace.WithSpanKind(k.kind), trace.WithAttributes(attrs...)},
		first: attemptOptions(1, k.addr, k.port, k.kind == trace.SpanKindServer),
	}
}

// attemptOptions are the start options of attempt span n of a call.
func attemptOptions(n int, addr string, port int, server bool) []trace.SpanStartOption {
	kind := trace.SpanKindClient
	if server {
		kind = trace.SpanKindInternal // the server's own tries are in process
	}
	attrs := appendServer([]attribute.KeyValue{AttemptKey.Int(n)}, addr, port)
	return []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(attrs...)}
}

func appendServer(attrs []attribute.KeyValue, addr string, port int) []attribute.KeyValue {
	if addr != "" {
		attrs = append(attrs, semconv.ServerAddressKey.String(addr))
	}
	if port > 0 {
		attrs = append(attrs, semconv.ServerPortKey.Int(port))
	}
	return attrs
}

// series holds the metric record options of the calls of one shape and
// response model, each with its attribute set built once.
type series struct {
	base          []attribute.KeyValue  // every GenAI metric's attributes
	plain         []metric.RecordOption // base alone: duration without error, time to first chunk
	tokIn, tokOut []metric.RecordOption
	failed        memo[string, []metric.RecordOption] // duration, by error.type
	sets          *atomic.Int64
}

// seriesOf returns the metric record options of the shape's calls that got
// response model respModel.
func (sh *shape) seriesOf(respModel string) *series {
	if s, ok := sh.series.load(respModel); ok {
		return s
	}
	respModel = strings.Clone(respModel) // see Instrumenter.shape
	s := newSeries(sh.key, respModel)
	s.sets = sh.sets
	return sh.series.store(respModel, s, maxSeries, takeSets(sh.sets, 3))
}

func newSeries(k shapeKey, respModel string) *series {
	base := []attribute.KeyValue{
		semconv.GenAIOperationNameKey.String(k.op),
		semconv.GenAIProviderNameKey.String(k.provider),
	}
	if k.model != "" {
		base = append(base, semconv.GenAIRequestModelKey.String(k.model))
	}
	if respModel != "" {
		base = append(base, semconv.GenAIResponseModelKey.String(respModel))
	}
	base = appendServer(base, k.addr, k.port)
	return &series{
		base:   base,
		plain:  recordOptions(base),
		tokIn:  recordOptions(base, semconv.GenAITokenTypeKey.String("input")),
		tokOut: recordOptions(base, semconv.GenAITokenTypeKey.String("output")),
	}
}

// failedDur returns the duration record options with error.type errorType.
func (s *series) failedDur(errorType string) []metric.RecordOption {
	if o, ok := s.failed.load(errorType); ok {
		return o
	}
	errorType = strings.Clone(errorType) // see Instrumenter.shape
	return s.failed.store(errorType, recordOptions(s.base, semconv.ErrorTypeKey.String(errorType)), maxErrorTypes, takeSets(s.sets, 1))
}

func recordOptions(base []attribute.KeyValue, extra ...attribute.KeyValue) []metric.RecordOption {
	kv := append(base[:len(base):len(base)], extra...)
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}
