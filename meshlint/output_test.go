package meshlint_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/meshlint"
)

var update = flag.Bool("update", false, "rewrite the golden outputs in testdata/realistic")

// realisticFindings checks testdata/realistic: an OpenAI ServiceEntry with TLS
// origination, its DestinationRule and VirtualService, and an in-mesh vLLM server,
// against the policy a client exported (infermesh's defaults, openai-go's 2 retries,
// 64 calls in flight, x-session-id affinity).
func realisticFindings(t *testing.T) []meshlint.Finding {
	return checkFiles(t, "testdata/realistic/app.json", meshlint.Options{}, "testdata/realistic/mesh.yaml")
}

// The realistic file gives exactly these findings.
func TestRealisticFindings(t *testing.T) {
	want := []string{
		"warning conn-churn DestinationRule/chat-app/openai spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection :33",
		"error outlier-ejection DestinationRule/chat-app/openai spec.trafficPolicy.outlierDetection.maxEjectionPercent :38",
		"error stream-timeout VirtualService/chat-app/openai spec.http[0].timeout :58",
		"error timeout-order VirtualService/chat-app/openai spec.http[0].timeout :58",
		"error retry-amplification VirtualService/chat-app/openai spec.http[0].retries.attempts :60",
		"error stream-timeout VirtualService/chat-app/openai spec.http[0].retries.perTryTimeout :61",
		"error timeout-order VirtualService/chat-app/openai spec.http[0].retries.perTryTimeout :61",
		"warning timeout-order VirtualService/chat-app/openai spec.http[0].retries.perTryTimeout :61",
		"warning retry-non-idempotent VirtualService/chat-app/openai spec.http[0].retries.retryOn :62",
		"error retry-amplification VirtualService/chat-app/openai spec.http[1].retries.attempts :74",
		"error retry-amplification VirtualService/chat-app/openai spec.http[2].retries :82",
		"error stream-timeout VirtualService/chat-app/openai spec.http[2].timeout :83",
		"error timeout-order VirtualService/chat-app/openai spec.http[2].timeout :83",
		"error retry-amplification VirtualService/ml/vllm spec.http[0].retries :100",
		"warning stream-timeout VirtualService/ml/vllm spec.http[0].timeout :103",
		"warning affinity-header DestinationRule/ml/vllm spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName :118",
		"warning pool-overflow DestinationRule/ml/vllm spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests :121",
		"warning outlier-ejection DestinationRule/ml/vllm spec.trafficPolicy.outlierDetection.minHealthPercent :122",
	}
	fs := realisticFindings(t)
	if got := briefs(fs, ""); !slices.Equal(got, want) {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range fs {
		if f.File != "testdata/realistic/mesh.yaml" {
			t.Errorf("%s: file %q", brief(f), f.File)
		}
	}
}

// The realistic file with every finding fixed, as the README shows it, is clean.
func TestRealisticFixed(t *testing.T) {
	if fs := checkFiles(t, "testdata/realistic/app.json", meshlint.Options{}, "testdata/realistic/fixed.yaml"); len(fs) > 0 {
		t.Fatalf("findings: %v", briefs(fs, ""))
	}
}

// The three outputs of the realistic file match their golden files (go test -update
// rewrites them after a reviewed change).
func TestRealisticOutputs(t *testing.T) {
	fs := realisticFindings(t)
	for _, o := range []struct {
		file  string
		write func(*bytes.Buffer) error
	}{
		{"want.txt", func(b *bytes.Buffer) error { return meshlint.WriteText(b, fs) }},
		{"want.json", func(b *bytes.Buffer) error { return meshlint.WriteJSON(b, fs) }},
		{"want.sarif", func(b *bytes.Buffer) error { return meshlint.WriteSARIF(b, fs) }},
	} {
		var b bytes.Buffer
		if err := o.write(&b); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "realistic", o.file)
		if *update {
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s differs from the output (go test -update rewrites it):\n%s", o.file, b.String())
		}
	}
}

// The JSON contract: {"findings":[{rule, severity, resource, path, message, fix}]},
// nothing else, every field filled.
func TestJSONContract(t *testing.T) {
	var b bytes.Buffer
	if err := meshlint.WriteJSON(&b, realisticFindings(t)); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Findings []struct {
			Rule     string `json:"rule"`
			Severity string `json:"severity"`
			Resource string `json:"resource"`
			Path     string `json:"path"`
			Message  string `json:"message"`
			Fix      string `json:"fix"`
		} `json:"findings"`
	}
	dec := json.NewDecoder(&b)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range meshlint.Rules() {
		ids[r.ID] = true
	}
	resource := regexp.MustCompile(`^(VirtualService|DestinationRule|ServiceEntry)/[a-z0-9-]+/[a-z0-9-]+$`)
	if len(doc.Findings) != 18 {
		t.Fatalf("%d findings", len(doc.Findings))
	}
	for i, f := range doc.Findings {
		if !ids[f.Rule] || (f.Severity != "error" && f.Severity != "warning" && f.Severity != "info") ||
			!resource.MatchString(f.Resource) || !strings.HasPrefix(f.Path, "spec.") || f.Message == "" || f.Fix == "" {
			t.Errorf("finding %d breaks the contract: %+v", i, f)
		}
	}

	// No finding is an empty list, not null.
	b.Reset()
	if err := meshlint.WriteJSON(&b, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(strings.Fields(b.String()), ""); got != `{"findings":[]}` {
		t.Errorf("empty: %s", got)
	}
}

// The SARIF output has what SARIF 2.1.0 requires and code review needs: version,
// $schema, runs[].tool.driver.name and rules, and for each result a ruleId, level,
// message.text and locations with the file and line.
func TestSARIF(t *testing.T) {
	fs := realisticFindings(t)
	var b bytes.Buffer
	if err := meshlint.WriteSARIF(&b, fs); err != nil {
		t.Fatal(err)
	}
	var log struct {
		Version string `json:"version"`
		Schema  string `json:"$schema"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID               string `json:"id"`
						ShortDescription struct {
							Text string `json:"text"`
						} `json:"shortDescription"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
						Region struct {
							StartLine int `json:"startLine"`
						} `json:"region"`
					} `json:"physicalLocation"`
					LogicalLocations []struct {
						FullyQualifiedName string `json:"fullyQualifiedName"`
					} `json:"logicalLocations"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || !strings.Contains(log.Schema, "sarif-schema-2.1.0.json") || len(log.Runs) != 1 {
		t.Fatalf("version %q, $schema %q, %d runs", log.Version, log.Schema, len(log.Runs))
	}
	run := log.Runs[0]
	if run.Tool.Driver.Name != "infermesh-lint" || len(run.Tool.Driver.Rules) != len(meshlint.Rules()) {
		t.Fatalf("driver %+v", run.Tool.Driver)
	}
	if len(run.Results) != len(fs) {
		t.Fatalf("%d results for %d findings", len(run.Results), len(fs))
	}
	for i, r := range run.Results {
		f := fs[i]
		if r.RuleID != f.Rule || run.Tool.Driver.Rules[r.RuleIndex].ID != r.RuleID || (r.Level != "error" && r.Level != "warning") ||
			!strings.Contains(r.Message.Text, f.Message) || !strings.Contains(r.Message.Text, f.Fix) || len(r.Locations) != 1 {
			t.Fatalf("result %d: %+v", i, r)
		}
		l := r.Locations[0]
		if l.PhysicalLocation.ArtifactLocation.URI != f.File || l.PhysicalLocation.Region.StartLine != f.Line || f.Line == 0 ||
			l.LogicalLocations[0].FullyQualifiedName != f.Resource+"/"+f.Path {
			t.Fatalf("result %d location %+v for %s", i, l, brief(f))
		}
	}
}

// The README's worked example shows the realistic files and their real output.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []struct{ golden, before, after string }{
		{"testdata/realistic/mesh.yaml", "```yaml\n", "```\n"},
		{"testdata/realistic/want.txt", "$ cd meshlint && go run ./cmd/infermesh-lint -app testdata/realistic/app.json testdata/realistic/mesh.yaml\n", "$ echo $?\n1\n"},
	} {
		want, err := os.ReadFile(part.golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, []byte(part.before+string(want)+part.after)) {
			t.Errorf("README.md does not show %s as it is", part.golden)
		}
	}
}
