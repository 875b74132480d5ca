package meshlint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// MaxInputBytes caps one input file or stream; a larger one is an error rather than a
// machine out of memory.
const MaxInputBytes = 64 << 20

// ParseError is an input that cannot be read: which file, which line (0 when the parser
// gave none) and why.
type ParseError struct {
	File string
	Line int
	Err  error
}

// Error is "file:line: reason", or "file: reason" when the line is unknown.
func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

// Unwrap returns the reason.
func (e *ParseError) Unwrap() error { return e.Err }

// object is one Kubernetes object of the input, with its node for field positions.
type object struct {
	apiVersion, kind, namespace, name string
	file                              string
	node                              *yaml.Node // a mapping
}

// readAll reads r whole, up to MaxInputBytes.
func readAll(file string, r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxInputBytes+1))
	if err != nil {
		return nil, &ParseError{File: file, Err: err}
	}
	if len(b) > MaxInputBytes {
		return nil, &ParseError{File: file, Err: fmt.Errorf("input is larger than %d bytes", MaxInputBytes)}
	}
	return b, nil
}

// readObjects splits a YAML (or JSON) stream into objects: every document, and the items
// of a List (kind: List, or any kind ending in List as kubectl get -o yaml writes).
func readObjects(file string, r io.Reader) ([]object, error) {
	b, err := readAll(file, r)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var objs []object
	// Each pass consumes one document; the input is finite, so the loop is bounded.
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, yamlError(file, err)
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue // an empty document, such as a trailing ---
		}
		objs, err = appendObjects(objs, file, doc.Content[0])
		if err != nil {
			return nil, err
		}
	}
}

func appendObjects(objs []object, file string, n *yaml.Node) ([]object, error) {
	if n.Kind != yaml.MappingNode {
		return nil, &ParseError{File: file, Line: n.Line, Err: errors.New("expected a Kubernetes object (a mapping with apiVersion and kind)")}
	}
	o := object{file: file, node: n}
	root := cursor{n: n}
	o.apiVersion = root.key("apiVersion").scalar()
	o.kind = root.key("kind").scalar()
	meta := root.key("metadata")
	o.name, o.namespace = meta.key("name").scalar(), meta.key("namespace").scalar()
	if o.kind == "" {
		return nil, &ParseError{File: file, Line: n.Line, Err: errors.New("object has no kind")}
	}
	items := root.key("items")
	if strings.HasSuffix(o.kind, "List") && items.n != nil {
		if items.n.Kind != yaml.SequenceNode && !isNull(items.n) {
			return nil, &ParseError{File: file, Line: items.line, Err: fmt.Errorf("%s items is not a list", o.kind)}
		}
		for _, it := range items.n.Content {
			var err error
			if objs, err = appendObjects(objs, file, it); err != nil {
				return nil, err
			}
		}
		return objs, nil
	}
	return append(objs, o), nil
}

// yamlLine finds the line the YAML parser names in its message: the YAML parsers report
// syntax errors only as text ("yaml: line 7: did not find expected key").
var yamlLine = regexp.MustCompile(`yaml: line (\d+): `)

func yamlError(file string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatchIndex(msg); m != nil {
		if line, convErr := strconv.Atoi(msg[m[2]:m[3]]); convErr == nil {
			return &ParseError{File: file, Line: line, Err: errors.New(msg[m[1]:])}
		}
	}
	return &ParseError{File: file, Err: err}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// decode converts the object to JSON as kubectl does (sigs.k8s.io/yaml) and decodes it
// into v, whose Istio spec types unmarshal themselves with protobuf JSON.
func (o object) decode(v any) error {
	y, err := yaml.Marshal(o.node)
	if err == nil {
		var j []byte
		if j, err = sigsyaml.YAMLToJSON(y); err == nil {
			err = json.Unmarshal(j, v)
		}
	}
	if err != nil {
		return &ParseError{File: o.file, Line: o.node.Line, Err: fmt.Errorf("%s %s: %w", o.kind, o.id(), err)}
	}
	return nil
}

// id is namespace/name, with "default" for an object that names no namespace (as
// kubectl apply would place it with the default context).
func (o object) id() string { return o.ns() + "/" + o.name }

func (o object) ns() string {
	if o.namespace == "" {
		return "default"
	}
	return o.namespace
}

// cursor walks an object's node alongside its decoded value, to give each setting its
// field path and line. A cursor on an absent field keeps its parent's line.
type cursor struct {
	n    *yaml.Node
	line int
	path string
}

func newCursor(n *yaml.Node) cursor { return cursor{n: n, line: n.Line} }

// key steps into a mapping field, written in camelCase or in the protobuf snake_case
// that Istio also accepts.
func (c cursor) key(name string) cursor {
	next := cursor{line: c.line, path: name}
	if c.path != "" {
		next.path = c.path + "." + name
	}
	if c.n == nil || c.n.Kind != yaml.MappingNode {
		return next
	}
	snake := snakeCase(name)
	for i := 0; i+1 < len(c.n.Content); i += 2 {
		if k := c.n.Content[i].Value; k == name || k == snake {
			next.n, next.line = c.n.Content[i+1], c.n.Content[i].Line
			return next
		}
	}
	return next
}

// index steps into a sequence element.
func (c cursor) index(i int) cursor {
	next := cursor{line: c.line, path: fmt.Sprintf("%s[%d]", c.path, i)}
	if c.n != nil && c.n.Kind == yaml.SequenceNode && i < len(c.n.Content) {
		next.n, next.line = c.n.Content[i], c.n.Content[i].Line
	}
	return next
}

func (c cursor) scalar() string {
	if c.n == nil || c.n.Kind != yaml.ScalarNode {
		return ""
	}
	return c.n.Value
}

func snakeCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
