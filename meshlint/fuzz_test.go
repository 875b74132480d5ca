package meshlint_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/infermesh/infermesh/meshlint"
)

// FuzzReadYAML feeds the reader arbitrary input: it never panics, an error is always a
// *ParseError naming the file, and what it reads always checks into complete findings.
func FuzzReadYAML(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	files = append(files, "testdata/realistic/mesh.yaml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"", "---\n---\n", "kind: List\nitems: 3\n", "a: [\n", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{timeout: 1.5s}]}\n",
		"apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {http: [{timeout: 99999999999999s}]}\n", "{\"kind\": \"List\", \"items\": [{\"kind\": \"x\"}]}", "&a [*a]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var m meshlint.Mesh
		if err := m.ReadYAML("fuzz.yaml", bytes.NewReader(in)); err != nil {
			var pe *meshlint.ParseError
			if !errors.As(err, &pe) || pe.File != "fuzz.yaml" || pe.Line < 0 {
				t.Fatalf("error %v is not a ParseError naming the file", err)
			}
			return
		}
		fs, err := meshlint.Check(&m, meshlint.Options{LLMHosts: []string{"*"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range fs {
			if fd.Rule == "" || fd.Resource == "" || fd.Path == "" || fd.Message == "" || fd.Fix == "" || fd.File != "fuzz.yaml" {
				t.Fatalf("incomplete finding %+v", fd)
			}
		}
		if err := meshlint.WriteSARIF(io.Discard, fs); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzReadApp checks the -app reader and its durations: whatever it accepts survives
// a round trip through the JSON that Transport.Describe writes.
func FuzzReadApp(f *testing.F) {
	for _, name := range []string{"testdata/realistic/app.json", "testdata/rules/pool-overflow/app.yaml", "testdata/rules/timeout-order/app.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`routes: [{prefix: /v1/x, attempts: 1, timeout: 1h2m3.5s, stream: {idleTimeout: 0.000000001s}}]`))
	f.Add([]byte(`{"routes": [{"prefix": "", "attempts": 1, "timeout": "-0s"}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := meshlint.ReadApp("app.yaml", bytes.NewReader(in))
		if err != nil {
			var pe *meshlint.ParseError
			if !errors.As(err, &pe) || pe.File != "app.yaml" {
				t.Fatalf("error %v is not a ParseError naming the file", err)
			}
			return
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		back, err := meshlint.ReadApp("again.json", bytes.NewReader(b))
		if err != nil || !reflect.DeepEqual(back, d) {
			t.Fatalf("round trip of %s: %+v, %v; want %+v", b, back, err, d)
		}
	})
}
