package budgets

import (
	"fmt"
	"strings"
)

// verdict is one budget measured: its figures and its ratio against the limit.
type verdict struct {
	// name says what is compared; budget states the limit as the issue does.
	name, budget string
	// ratio is the median of the rounds' ratios with their range, unless about says what
	// it is instead.
	ratio spread
	about string
	// floor and limit are the least and the most the ratio may be.
	floor, limit float64
	// lines are the measured figures the ratio comes from.
	lines []string
}

func (v verdict) met() bool { return v.ratio.med >= v.floor && v.ratio.med <= v.limit }

func (v verdict) String() string {
	var b strings.Builder
	status := "MET"
	if !v.met() {
		status = "MISSED"
	}
	fmt.Fprintf(&b, "%s: %s\n", v.name, v.budget)
	for _, l := range v.lines {
		fmt.Fprintf(&b, "    %s\n", l)
	}
	about := v.about
	if about == "" {
		about = "median of the rounds; range: the rounds'"
	}
	fmt.Fprintf(&b, "    ratio %.3f (%.3f to %.3f; %s): limit %.2f, %s\n", v.ratio.med, v.ratio.lo, v.ratio.hi, about, v.limit, status)
	return b.String()
}

// table renders the verdicts as a markdown table.
func table(vs []verdict) string {
	var b strings.Builder
	b.WriteString("| budget | ratio | range | limit | met |\n|---|--:|--:|--:|---|\n")
	for _, v := range vs {
		met := "yes"
		if !v.met() {
			met = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %.3f | %.3f to %.3f | %.2f | %s |\n", v.name, v.ratio.med, v.ratio.lo, v.ratio.hi, v.limit, met)
	}
	return b.String()
}
