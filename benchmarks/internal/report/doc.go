// Package report holds the mesh benchmark's results and renders them: JSON ([Report.JSON]),
// a markdown document with the measured tables, the per-hop costs and the goals
// ([Report.Markdown]), and a chart of latency percentiles by topology and protocol
// ([Report.Chart]).
package report
