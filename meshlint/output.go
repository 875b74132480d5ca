package meshlint

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText writes findings for a reader: the location, severity, rule, resource and
// field on one line, then the message and the fix, then a count.
func WriteText(w io.Writer, findings []Finding) error {
	var b strings.Builder
	count := map[Severity]int{}
	for _, f := range findings {
		count[f.Severity]++
		switch {
		case f.File != "" && f.Line > 0:
			fmt.Fprintf(&b, "%s:%d: ", f.File, f.Line)
		case f.File != "":
			fmt.Fprintf(&b, "%s: ", f.File)
		}
		fmt.Fprintf(&b, "%s [%s] %s %s\n", f.Severity, f.Rule, f.Resource, f.Path)
		wrap(&b, "    ", "    ", f.Message)
		wrap(&b, "    fix: ", "         ", f.Fix)
	}
	if len(findings) == 0 {
		b.WriteString("no findings\n")
	} else {
		fmt.Fprintf(&b, "%d error(s), %d warning(s), %d info\n", count[SeverityError], count[SeverityWarning], count[SeverityInfo])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// textWidth is where WriteText wraps messages.
const textWidth = 100

// wrap writes text in lines of at most textWidth columns where its words allow, the
// first line after first and the others after next.
func wrap(b *strings.Builder, first, next, text string) {
	b.WriteString(first)
	col := len(first)
	for i, w := range strings.Fields(text) {
		if i > 0 && col+1+len(w) > textWidth {
			b.WriteString("\n" + next)
			col = len(next)
		} else if i > 0 {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	b.WriteByte('\n')
}

// WriteJSON writes {"findings":[...]}, each finding with rule, severity, resource, path,
// message and fix: the contract of infermesh-lint -format json.
func WriteJSON(w io.Writer, findings []Finding) error {
	if findings == nil {
		findings = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Findings []Finding `json:"findings"`
	}{findings})
}

// SARIF 2.1.0, the subset code review tools read.
type (
	sarifLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []sarifRun `json:"runs"`
	}
	sarifRun struct {
		Tool    sarifTool     `json:"tool"`
		Results []sarifResult `json:"results"`
	}
	sarifTool struct {
		Driver sarifDriver `json:"driver"`
	}
	sarifDriver struct {
		Name           string      `json:"name"`
		InformationURI string      `json:"informationUri"`
		Rules          []sarifRule `json:"rules"`
	}
	sarifRule struct {
		ID               string       `json:"id"`
		ShortDescription sarifMessage `json:"shortDescription"`
		FullDescription  sarifMessage `json:"fullDescription"`
		Help             sarifMessage `json:"help"`
	}
	sarifMessage struct {
		Text string `json:"text"`
	}
	sarifResult struct {
		RuleID    string          `json:"ruleId"`
		RuleIndex int             `json:"ruleIndex"`
		Level     string          `json:"level"`
		Message   sarifMessage    `json:"message"`
		Locations []sarifLocation `json:"locations"`
	}
	sarifLocation struct {
		PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
		LogicalLocations []sarifLogical `json:"logicalLocations"`
	}
	sarifPhysical struct {
		ArtifactLocation sarifArtifact `json:"artifactLocation"`
		Region           *sarifRegion  `json:"region,omitempty"`
	}
	sarifArtifact struct {
		URI string `json:"uri"`
	}
	sarifRegion struct {
		StartLine int `json:"startLine"`
	}
	sarifLogical struct {
		FullyQualifiedName string `json:"fullyQualifiedName"`
		Kind               string `json:"kind"`
	}
)

// SARIFSchema is the $schema the SARIF output names.
const SARIFSchema = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

// WriteSARIF writes findings as a SARIF 2.1.0 log with one run, so that CI can show them
// in code review: every rule in tool.driver.rules, each finding a result at its file
// and line, with the resource and field as a logical location.
func WriteSARIF(w io.Writer, findings []Finding) error {
	rules := Rules()
	index := map[string]int{}
	driver := sarifDriver{Name: "infermesh-lint", InformationURI: "https://github.com/infermesh/infermesh/tree/main/meshlint"}
	for i, r := range rules {
		index[r.ID] = i
		driver.Rules = append(driver.Rules, sarifRule{ID: r.ID, ShortDescription: sarifMessage{r.Summary},
			FullDescription: sarifMessage{r.Help}, Help: sarifMessage{r.Help}})
	}
	results := make([]sarifResult, 0, len(findings))
	for _, f := range findings {
		l := sarifLocation{LogicalLocations: []sarifLogical{{FullyQualifiedName: f.Resource + "/" + f.Path, Kind: "member"}}}
		if f.File != "" {
			l.PhysicalLocation = &sarifPhysical{ArtifactLocation: sarifArtifact{URI: f.File}}
			if f.Line > 0 {
				l.PhysicalLocation.Region = &sarifRegion{StartLine: f.Line}
			}
		}
		results = append(results, sarifResult{RuleID: f.Rule, RuleIndex: index[f.Rule], Level: sarifLevel(f.Severity),
			Message: sarifMessage{f.Message + " Fix: " + f.Fix}, Locations: []sarifLocation{l}})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: SARIFSchema, Version: "2.1.0", Runs: []sarifRun{{Tool: sarifTool{driver}, Results: results}}})
}

func sarifLevel(s Severity) string {
	switch s {
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	}
	return "note"
}
