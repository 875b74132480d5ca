package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/internal/mesh"
)

// localReply is what Envoy's local reply of status with body tells.
func localReply(status int, body string) mesh.Envoy {
	var e mesh.Envoy
	e.ParseLocalReply(status, body)
	return e
}

func TestHTTPVerdict(t *testing.T) {
	for _, c := range []struct {
		status    int
		env       mesh.Envoy
		outcome   breaker.Outcome
		retryable bool
		class     breaker.Class
	}{
		{200, mesh.Envoy{}, breaker.OutcomeSuccess, false, ""},
		{401, mesh.Envoy{}, breaker.OutcomeExcluded, false, breaker.ClassAuth},
		{403, mesh.Envoy{}, breaker.OutcomeExcluded, false, breaker.ClassAuth},
		{400, mesh.Envoy{}, breaker.OutcomeExcluded, false, breaker.ClassClientError},
		{408, mesh.Envoy{}, breaker.OutcomeFailure, true, breaker.ClassTimeout},
		{429, mesh.Envoy{}, breaker.OutcomeFailure, true, breaker.ClassRateLimited},
		{500, mesh.Envoy{}, breaker.OutcomeFailure, true, breaker.ClassServerError},
		{501, mesh.Envoy{}, breaker.OutcomeFailure, false, breaker.ClassServerError},
		{503, mesh.Envoy{}, breaker.OutcomeFailure, true, breaker.ClassUnavailable},
		{503, localReply(503, "no healthy upstream"), breaker.OutcomeFailure, false, breaker.ClassUnavailable},
		{503, localReply(503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
			breaker.OutcomeFailure, true, breaker.ClassConnection},
		{503, localReply(503, "upstream connect error or disconnect/reset before headers. reset reason: overflow"),
			breaker.OutcomeFailure, true, breaker.ClassOverloaded},
		{502, mesh.Envoy{Overloaded: true}, breaker.OutcomeFailure, true, breaker.ClassOverloaded},
		{504, localReply(504, "upstream request timeout"), breaker.OutcomeFailure, true, breaker.ClassTimeout},
		{529, mesh.Envoy{}, breaker.OutcomeFailure, true, breaker.ClassOverloaded},
	} {
		v := mesh.HTTPVerdict(c.status, c.env, 2*time.Second)
		if v.Outcome != c.outcome || v.Retryable != c.retryable || v.Class != c.class || v.RetryAfter != 2*time.Second {
			t.Errorf("HTTPVerdict(%d, %+v) = %+v; want outcome %v retryable %v class %q", c.status, c.env, v, c.outcome, c.retryable, c.class)
		}
	}
	retried := localReply(503, "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote reset")
	if v := mesh.HTTPVerdict(503, retried, 0); !v.Signals.MeshRetried {
		t.Errorf("a reply the mesh retried: signals %+v, want MeshRetried", v.Signals)
	}
	if v := mesh.HTTPVerdict(200, mesh.ParseHeaders(func(k string) string {
		return map[string]string{"X-Envoy-Attempt-Count": "3"}[k]
	}), 0); !v.Signals.MeshRetried {
		t.Errorf("x-envoy-attempt-count 3: signals %+v, want MeshRetried", v.Signals)
	}
}

func TestErrorVerdict(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		err       error
		outcome   breaker.Outcome
		retryable bool
		class     breaker.Class
	}{
		{context.Cause(ctx), breaker.OutcomeExcluded, false, breaker.ClassCanceled},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), breaker.OutcomeFailure, true, breaker.ClassTimeout},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, breaker.OutcomeFailure, true, breaker.ClassConnection},
		{io.ErrUnexpectedEOF, breaker.OutcomeFailure, true, breaker.ClassConnection},
		{&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, breaker.OutcomeFailure, false, breaker.ClassConnection},
		{errors.New("something else"), breaker.OutcomeFailure, true, breaker.ClassUnknown},
	} {
		v := mesh.ErrorVerdict(c.err)
		if v.Outcome != c.outcome || v.Retryable != c.retryable || v.Class != c.class {
			t.Errorf("ErrorVerdict(%v) = %+v; want outcome %v retryable %v class %q", c.err, v, c.outcome, c.retryable, c.class)
		}
	}
	if v := mesh.ErrorVerdict(nil); v != (breaker.Verdict{}) {
		t.Errorf("ErrorVerdict(nil) = %+v", v)
	}
}

func TestGRPCVerdict(t *testing.T) {
	const unavailable, exhausted, invalid, internal = 14, 8, 3, 13
	opened := mesh.GRPCReply{Opened: true, Retryable: true}
	shed := mesh.GRPCReply{Opened: true, TrailersOnly: true, Retryable: true}
	for _, c := range []struct {
		name      string
		code      uint32
		env       mesh.Envoy
		r         mesh.GRPCReply
		outcome   breaker.Outcome
		retryable bool
		class     breaker.Class
	}{
		{"invalid argument", invalid, mesh.Envoy{}, opened, breaker.OutcomeExcluded, false, breaker.ClassClientError},
		{"unavailable", unavailable, mesh.Envoy{}, opened, breaker.OutcomeFailure, true, breaker.ClassUnavailable},
		{"no stream opened", unavailable, mesh.Envoy{}, mesh.GRPCReply{Retryable: true}, breaker.OutcomeFailure, true, breaker.ClassConnection},
		{"no healthy upstream", unavailable, localReply(503, "no healthy upstream"), shed, breaker.OutcomeFailure, false, breaker.ClassUnavailable},
		{"after a message", unavailable, mesh.Envoy{}, mesh.GRPCReply{Opened: true}, breaker.OutcomeFailure, false, breaker.ClassUnavailable},
		{"shed", exhausted, mesh.Envoy{}, shed, breaker.OutcomeFailure, true, breaker.ClassOverloaded},
		{"exhausted with headers (a message too large)", exhausted, mesh.Envoy{}, opened, breaker.OutcomeFailure, false, breaker.ClassOverloaded},
		{"internal", internal, mesh.Envoy{}, opened, breaker.OutcomeFailure, false, breaker.ClassServerError},
	} {
		v := mesh.GRPCVerdict(c.code, c.env, c.r)
		if v.Outcome != c.outcome || v.Retryable != c.retryable || v.Class != c.class {
			t.Errorf("%s: GRPCVerdict = %+v; want outcome %v retryable %v class %q", c.name, v, c.outcome, c.retryable, c.class)
		}
	}
}
