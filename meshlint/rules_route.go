package meshlint

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/infermesh/infermesh/llmclient"
)

// verdict is what a rule finds for one path a route carries.
type verdict struct {
	sev      Severity
	msg, fix string
}

// worst judges each path r carries (only streamed ones when streams is set) with the
// app route that path takes, and returns the worst verdict, the first among equals.
func (c *checker) worst(r *route, streams bool, judge func(path string, a llmclient.RouteDescription) (verdict, bool)) (verdict, bool) {
	var best verdict
	found := false
	for _, p := range c.carries[r] {
		if streams && !isStreamPath(p) {
			continue
		}
		a, ok := appRoute(&c.app, p)
		if !ok {
			continue
		}
		if v, ok := judge(p, a); ok && (!found || v.sev.rank() < best.sev.rank()) {
			best, found = v, true
		}
	}
	return best, found
}

func isStreamPath(p string) bool {
	return slices.ContainsFunc(streamPaths, func(s string) bool { return strings.HasPrefix(p, s) })
}

// streamTimeout: stream-timeout. Envoy's route timeout runs until the response ends,
// so it bounds a whole stream; its per-try timeout stops once response headers flow
// back, so it bounds the wait for the headers, which a model may send only with its
// first token.
func (c *checker) streamTimeout(r *route) []Finding {
	var out []Finding
	if t := r.timeout; t.v > 0 {
		if v, ok := c.worst(r, true, func(p string, a llmclient.RouteDescription) (verdict, bool) {
			return streamRouteTimeout(t, p, a)
		}); ok {
			out = append(out, finding(RuleStreamTimeout, v.sev, t.at, v.msg, v.fix))
		}
	}
	if pt := r.perTry; pt.v > 0 {
		resend := "answers 504"
		if r.retries.v > 0 && len(retryOnAny(r.retryOn.v, "5xx", "gateway-error", "reset")) > 0 {
			resend = "sends the request again, starting a second generation"
		}
		if v, ok := c.worst(r, true, func(p string, a llmclient.RouteDescription) (verdict, bool) {
			return streamPerTry(pt, resend, p, a)
		}); ok {
			out = append(out, finding(RuleStreamTimeout, v.sev, pt.at, v.msg, v.fix))
		}
	}
	return out
}

// streamRouteTimeout judges a finite route timeout t against what the app's streams
// need: with a MaxDuration, that long; without one, streams are unbounded, so t below
// first-token + idle timeout (the shortest stream the app still counts as healthy, a
// first token at its deadline and one full gap) is an error and any longer finite t a
// warning.
func streamRouteTimeout(t setting[time.Duration], p string, a llmclient.RouteDescription) (verdict, bool) {
	first, idle, total := time.Duration(a.Stream.FirstTokenTimeout), time.Duration(a.Stream.IdleTimeout), time.Duration(a.Stream.MaxDuration)
	if total > 0 {
		if t.v >= total {
			return verdict{}, false
		}
		return verdict{SeverityError,
			fmt.Sprintf("timeout %s%s cuts streamed %s calls that the app lets run up to %s (maxDuration of its %q route): the sidecar resets the stream mid-answer and the caller gets a truncated reply.",
				dur(t.v), t.origin(), p, dur(total), a.Name),
			fmt.Sprintf("Set timeout to at least %s, or remove it and let infermesh bound streams (first token %s, idle %s, total %s).",
				dur(total), dur(first), dur(idle), dur(total))}, true
	}
	if need := first + idle; need > 0 && t.v < need {
		return verdict{SeverityError,
			fmt.Sprintf("timeout %s%s is shorter than a healthy stream of %s needs: the app's %q route waits up to %s for the first token and %s between chunks, with no total limit, so the sidecar resets streams the app still counts as healthy; what was already delivered is lost and is not retried.",
				dur(t.v), t.origin(), p, a.Name, dur(first), dur(idle)),
			fmt.Sprintf("Remove timeout from this route (Istio's default is none) and let infermesh's first-token (%s) and idle (%s) timeouts judge streams; if a total bound is required, set the app's MaxStreamDuration and a timeout at least that long.",
				dur(first), dur(idle))}, true
	}
	return verdict{SeverityWarning,
		fmt.Sprintf("timeout %s%s is finite on a route that carries streamed %s, and the app's %q route sets no total limit on streams: every answer that streams for longer than %s is cut mid-answer.",
			dur(t.v), t.origin(), p, a.Name, dur(t.v)),
		fmt.Sprintf("Remove timeout from this route, or set the app's MaxStreamDuration to %s or less so that infermesh ends long streams itself, with a typed error, before the sidecar cuts them.",
			dur(t.v))}, true
}

// streamPerTry judges a per-try timeout: below the app's first-token timeout it cuts
// tries the app is still waiting for. Above it the app gives up first, and once headers
// flow Envoy no longer applies it, so it cannot cut a stream.
func streamPerTry(pt setting[time.Duration], resend, p string, a llmclient.RouteDescription) (verdict, bool) {
	first := time.Duration(a.Stream.FirstTokenTimeout)
	if first == 0 || pt.v >= first {
		return verdict{}, false
	}
	return verdict{SeverityError,
		fmt.Sprintf("perTryTimeout %s is shorter than the app's first-token timeout of %s (its %q route) on a route that carries streamed %s: Envoy abandons a try that has sent no response headers within %s and %s, so a model still queueing or thinking is cut before the app would give up.",
			dur(pt.v), dur(first), a.Name, p, dur(pt.v), resend),
		fmt.Sprintf("Remove retries.perTryTimeout from routes that carry streams, or set it above %s; infermesh's first-token timeout judges slow streams and retries them only before any content reached the caller.",
			dur(first))}, true
}

// timeoutOrder: timeout-order. The sidecar must not cut an app try before the app's own
// limit, and the mesh's own retries must fit in its route timeout.
func (c *checker) timeoutOrder(r *route) []Finding {
	var out []Finding
	for _, s := range []struct {
		name string
		st   setting[time.Duration]
	}{{"timeout", r.timeout}, {"perTryTimeout", r.perTry}} {
		if s.st.v <= 0 {
			continue
		}
		if v, ok := c.worst(r, false, func(p string, a llmclient.RouteDescription) (verdict, bool) {
			return cutsAppTry(s.name, s.st, p, a)
		}); ok {
			out = append(out, finding(RuleTimeoutOrder, v.sev, s.st.at, v.msg, v.fix))
		}
	}
	n, pt, t := r.retries.v, r.perTry.v, r.timeout.v
	if n <= 0 || pt <= 0 || t <= 0 || pt*time.Duration(n+1) <= t {
		return out
	}
	fix := fmt.Sprintf("Set timeout to at least perTryTimeout × %d tries (%s), or lower perTryTimeout to %s or less.",
		n+1, dur(pt*time.Duration(n+1)), dur(t/time.Duration(n+1)))
	msg := fmt.Sprintf("perTryTimeout %s is not shorter than timeout %s%s: a try that times out uses up the route timeout, so none of the %d retries can follow a timed-out try.",
		dur(pt), dur(t), r.timeout.origin(), n)
	if pt < t {
		fit := int(t / pt)
		msg = fmt.Sprintf("perTryTimeout %s × %d tries is %s, more than timeout %s%s: after slow tries only %d fit, so %d of the %d retries can never run.",
			dur(pt), n+1, dur(pt*time.Duration(n+1)), dur(t), r.timeout.origin(), fit, n+1-fit, n)
	}
	return append(out, finding(RuleTimeoutOrder, SeverityWarning, r.perTry.at, msg, fix))
}

// cutsAppTry judges a mesh timeout against the app's budget for one try of a
// non-streamed call: its per-try timeout, else its overall timeout.
func cutsAppTry(name string, st setting[time.Duration], p string, a llmclient.RouteDescription) (verdict, bool) {
	budget, label := time.Duration(a.PerTryTimeout), "per-try timeout"
	if budget == 0 {
		budget, label = time.Duration(a.Timeout), "overall timeout"
	}
	if budget == 0 || st.v >= budget {
		return verdict{}, false
	}
	how := "the sidecar answers 504 (UT, upstream request timeout) to calls the app would still wait for, and the app retries a call the mesh will cut again"
	if name == "perTryTimeout" {
		how = fmt.Sprintf("a non-streamed answer arrives whole, so Envoy abandons every try that generates for longer than %s and the app sees a 504 instead of its own timeout", dur(st.v))
	}
	return verdict{SeverityError,
		fmt.Sprintf("%s %s%s is shorter than the app's %s of %s for non-streamed %s calls (its %q route): %s.",
			name, dur(st.v), st.origin(), label, dur(budget), p, a.Name, how),
		fmt.Sprintf("Set %s to at least %s (the app's %s), or remove it so that the app's own limits act first.",
			name, dur(budget), label)}, true
}

// amplification is the worst case of one route: upstream requests per logical call.
type amplification struct {
	path         string
	app          llmclient.RouteDescription
	appTries     int // the app's attempts, one more when it hedges
	aware, naive int
}

// retryAmplification: retry-amplification. Naively every layer multiplies: mesh tries
// × app attempts × SDK tries. infermesh answers the SDK with x-should-retry: false, so
// the SDK adds none; and it adds no attempt after an answer the mesh already retried
// (x-envoy-attempt-count > 1), which it can see only when the sidecar reports the count
// in responses. Then the worst case is app attempts that each reached the mesh once,
// and a last one the mesh tried in full: mesh tries + app attempts - 1.
func (c *checker) retryAmplification(r *route) []Finding {
	meshTries := r.retries.v + 1
	if meshTries == 1 {
		return nil // the app's own attempts are its own choice, not a disagreement with the mesh
	}
	visible := r.attemptCounts || c.attempts.resource != ""
	sdkTries := c.app.SDKRetries + 1
	var w amplification
	for _, p := range c.carries[r] {
		a, ok := appRoute(&c.app, p)
		if !ok {
			continue
		}
		appTries := a.Attempts
		if a.Hedging {
			appTries++
		}
		aware := meshTries * appTries
		if visible {
			aware = meshTries + appTries - 1
		}
		if aware > w.aware {
			w = amplification{path: p, app: a, appTries: appTries, aware: aware, naive: meshTries * appTries * sdkTries}
		}
	}
	sev := SeverityWarning
	switch {
	case w.aware > 4:
		sev = SeverityError
	case w.aware <= 2:
		return nil
	}
	return []Finding{finding(RuleRetryAmplification, sev, r.retries.at, c.amplificationMessage(r, w, visible, sdkTries), c.amplificationFix(r, w, visible))}
}

func (c *checker) amplificationMessage(r *route, w amplification, visible bool, sdkTries int) string {
	meshTries := r.retries.v + 1
	app := fmt.Sprintf("%d app attempts (the app's %q route", w.appTries, w.app.Name)
	if w.app.Hedging {
		app += ", a hedge counted as one more"
	}
	app += ")"
	var b strings.Builder
	fmt.Fprintf(&b, "Up to %d upstream requests per call to %s: ", w.aware, w.path)
	on := r.retryOn.v
	if !r.retryOn.set && on == istioRetryOn {
		on = "connect-failure, refused-stream, unavailable, cancelled or a 503"
	}
	mesh := fmt.Sprintf("%d mesh tries (%d retries on %s)", meshTries, r.retries.v, on)
	if !r.retries.set && r.retries.note != "" {
		mesh = fmt.Sprintf("%d mesh tries (%s: %d retries on %s)", meshTries, r.retries.note, r.retries.v, on)
	}
	switch {
	case visible:
		fmt.Fprintf(&b, "%s + %s - 1: infermesh adds no attempt after an answer the mesh already retried (x-envoy-attempt-count > 1).", mesh, app)
	default:
		fmt.Fprintf(&b, "%s × %s. The sidecar does not report x-envoy-attempt-count in responses (Istio does not by default), so infermesh cannot tell a mesh-retried answer from a first one and retries it again.", mesh, app)
	}
	fmt.Fprintf(&b, " The SDK adds none (infermesh answers failures with x-should-retry: false); without infermesh's mesh awareness: %d × %d × %d SDK tries = %d.",
		meshTries, w.appTries, sdkTries, w.naive)
	return b.String()
}

func (c *checker) amplificationFix(r *route, w amplification, visible bool) string {
	meshTries := r.retries.v + 1
	fix := "Set retries: {attempts: 0} on this route and let infermesh retry: it retries only before the first content chunk, honours Retry-After and spends a retry budget."
	if !visible {
		fix += fmt.Sprintf(" Or keep the mesh's retries and let infermesh see them: an EnvoyFilter that MERGEs include_attempt_count_in_response: true into the sidecar's outbound VIRTUAL_HOST brings the worst case to %d.",
			meshTries+w.appTries-1)
	}
	return fix
}

// retryNonIdempotent: retry-non-idempotent. LLM calls are POSTs that cost money; a
// 5xx or a reset may come after the model ran.
func (c *checker) retryNonIdempotent(r *route) []Finding {
	if r.retries.v <= 0 {
		return nil
	}
	risky := retryOnAny(r.retryOn.v, "5xx", "gateway-error", "reset", "500", "502", "504")
	if len(risky) == 0 {
		return nil
	}
	return []Finding{finding(RuleRetryNonIdempotent, SeverityWarning, r.retryOn.at,
		fmt.Sprintf("retryOn %q makes the sidecar re-send LLM POSTs (%s) on %s: the upstream may already have run the request, so a generation can be computed and billed twice.",
			r.retryOn.v, strings.Join(c.carries[r], ", "), strings.Join(risky, " or ")),
		"Retry only what never reached the model, retryOn: connect-failure,refused-stream,reset-before-request (or attempts: 0), and leave 5xx to infermesh, which retries only before the first content chunk, honours Retry-After and spends a retry budget.")}
}

// retryOnAny returns the conditions of an Envoy retry_on list that are among want.
func retryOnAny(retryOn string, want ...string) []string {
	var out []string
	for _, tok := range strings.Split(retryOn, ",") {
		if tok = strings.TrimSpace(tok); slices.Contains(want, tok) {
			out = append(out, tok)
		}
	}
	return out
}
