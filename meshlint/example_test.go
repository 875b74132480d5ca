package meshlint_test

import (
	"fmt"
	"strings"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/meshlint"
)

// A VirtualService whose 30 s timeout suits ordinary APIs, checked against infermesh's
// default policy for chat completions.
func ExampleCheck() {
	const vs = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: openai
  namespace: chat-app
spec:
  hosts: [api.openai.com]
  http:
  - timeout: 30s
    retries: {attempts: 0}
    route:
    - destination: {host: api.openai.com}
`
	var m meshlint.Mesh
	if err := m.ReadYAML("openai.yaml", strings.NewReader(vs)); err != nil {
		panic(err)
	}
	app := llmclient.DefaultDescription() // or the JSON a running client's Transport.Describe wrote
	findings, err := meshlint.Check(&m, meshlint.Options{App: &app})
	if err != nil {
		panic(err)
	}
	for _, f := range findings {
		fmt.Printf("%s:%d %s %s %s\n", f.File, f.Line, f.Severity, f.Rule, f.Path)
	}
	fmt.Println("fails CI:", meshlint.HasErrors(findings))
	// Output:
	// openai.yaml:10 error stream-timeout spec.http[0].timeout
	// openai.yaml:10 error timeout-order spec.http[0].timeout
	// fails CI: true
}
