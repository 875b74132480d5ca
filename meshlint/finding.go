package meshlint

import (
	"cmp"
	"slices"
)

// Severity ranks a [Finding].
type Severity string

// The severities, worst first. The command exits 1 when any finding is an error.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
	SeverityInfo    Severity = "info"
)

func (s Severity) rank() int {
	switch s {
	case SeverityError:
		return 0
	case SeverityWarning:
		return 1
	}
	return 2
}

// Finding is one disagreement between the application's policy and the mesh's. Its JSON
// form is the contract of infermesh-lint -format json.
type Finding struct {
	// Rule is the stable id of the rule that fired, for example "stream-timeout".
	Rule string `json:"rule"`
	// Severity is error, warning or info.
	Severity Severity `json:"severity"`
	// Resource names what holds the setting: "VirtualService/<namespace>/<name>",
	// "DestinationRule/...", "ServiceEntry/...", "RouteConfiguration/<name>" or
	// "Cluster/<name>" (live mode), or "App/<name>" for the application's side.
	Resource string `json:"resource"`
	// Path is the field in the resource, for example "spec.http[0].timeout". A setting
	// left to its default is reported at the path where it would be written.
	Path string `json:"path"`
	// Message says in words what goes wrong and when.
	Message string `json:"message"`
	// Fix is a concrete change that silences the finding.
	Fix string `json:"fix"`

	// File and Line locate the setting in the input (Line is 0 when unknown; File is
	// the admin URL in live mode). They feed the text and SARIF outputs.
	File string `json:"-"`
	Line int    `json:"-"`

	shared bool // the setting serves several routes; see worstPerSetting
}

// HasErrors reports whether any finding is an error.
func HasErrors(findings []Finding) bool {
	return slices.ContainsFunc(findings, func(f Finding) bool { return f.Severity == SeverityError })
}

// sortFindings orders findings by input position, then rule, so every output is stable.
func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Resource, b.Resource),
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Rule, b.Rule),
			cmp.Compare(a.Severity.rank(), b.Severity.rank()),
		)
	})
}

// Rule describes one check.
type Rule struct {
	// ID is the stable id findings carry.
	ID string
	// Summary is one line on what the rule finds.
	Summary string
	// Help says when it fires and why it matters.
	Help string
}

// The rule ids.
const (
	RuleStreamTimeout      = "stream-timeout"
	RuleRetryAmplification = "retry-amplification"
	RuleTimeoutOrder       = "timeout-order"
	RuleRetryNonIdempotent = "retry-non-idempotent"
	RuleConnChurn          = "conn-churn"
	RulePoolOverflow       = "pool-overflow"
	RuleAffinityHeader     = "affinity-header"
	RuleOutlierEjection    = "outlier-ejection"
)

// Rules returns every rule, in a fixed order.
func Rules() []Rule {
	return []Rule{
		{RuleStreamTimeout, "A mesh timeout cuts or re-sends streamed LLM calls.",
			"Error when a route that carries /v1/chat/completions, /v1/completions or /v1/responses has a timeout shorter than the app's streams need " +
				"(its MaxDuration, or first-token + idle timeout when streams are unbounded), or a perTryTimeout shorter than the app's first-token timeout. " +
				"Warning when the route timeout is finite but longer, while the app's streams are unbounded."},
		{RuleRetryAmplification, "Mesh, app and SDK retries multiply.",
			"Worst-case upstream requests per logical call, mesh tries x app attempts x SDK tries, computed naively and with infermesh's mesh awareness. " +
				"Error above 4, warning above 2. A route without retries gets Istio's default: 2 retries."},
		{RuleTimeoutOrder, "Mesh and app timeouts are in the wrong order.",
			"Error when the mesh route timeout or perTryTimeout is shorter than the app's per-try budget (the sidecar answers 504 first). " +
				"Warning when the mesh's perTryTimeout x tries exceeds its own route timeout, so some retries can never run."},
		{RuleRetryNonIdempotent, "The mesh retries LLM POSTs that may have run.",
			"Warning when retryOn has 5xx, gateway-error, reset, 500, 502 or 504 on a route that carries LLM POST paths: a generation may be billed twice."},
		{RuleConnChurn, "Upstream connections are closed too often.",
			"Warning when connectionPool.http.maxRequestsPerConnection is between 1 and 100 on an LLM host."},
		{RulePoolOverflow, "The sidecar's pool is smaller than the app's concurrency.",
			"Error when http2MaxRequests, or tcp.maxConnections + http1MaxPendingRequests, is below the app's declared concurrency; " +
				"warning when http1MaxPendingRequests alone is below it. The sidecar answers 503 UO (overflow)."},
		{RuleAffinityHeader, "Session affinity is configured on one side only.",
			"Warning when a DestinationRule hashes on an HTTP header the app never sends, or the app sends an affinity header no DestinationRule of an in-mesh LLM host hashes on."},
		{RuleOutlierEjection, "Outlier detection can eject every endpoint.",
			"Error when outlier detection is on, panic mode is off (minHealthPercent 0, Istio's default) and every endpoint can be ejected " +
				"(maxEjectionPercent 100, or a known endpoint count that small); warning for an in-mesh host whose endpoint count is unknown."},
	}
}
