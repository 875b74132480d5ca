package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the example end to end on a loopback port.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, "127.0.0.1:0", &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"health before the model is loaded: NOT_SERVING (ServerReady false)",
		"health after loading: SERVING (ServerReady true)",
		"req-raw-true (raw contents true, usage 8 in / 8 out):",
		"req-raw-false (raw contents false, usage 8 in / 8 out):",
		"xor(0, 0) = 0", "xor(0, 1) = 1", "xor(1, 0) = 1", "xor(1, 1) = 0",
		`bad shape: grpcinfer: /inference.GRPCInferenceService/ModelInfer: InvalidArgument: oip: input "x": has shape [1 3] but model "xor-mlp" takes [-1 2]`,
		"health during the drain: NOT_SERVING (ServerReady false)",
		"drained and stopped after",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "= 1 ") != 4 || strings.Count(got, "= 0 ") != 4 {
		t.Errorf("XOR labels wrong:\n%s", got)
	}
}

func TestXORMLP(t *testing.T) {
	for _, tc := range []struct{ x1, x2, want float64 }{{0, 0, 0}, {0, 1, 1}, {1, 0, 1}, {1, 1, 0}} {
		var h [2]float64
		for j := range h {
			h[j] = sigmoid(hiddenW[j][0]*tc.x1 + hiddenW[j][1]*tc.x2 + hiddenB[j])
		}
		y := sigmoid(outW[0]*h[0] + outW[1]*h[1] + outB)
		if d := y - tc.want; d > 1e-3 || d < -1e-3 {
			t.Errorf("xor(%v, %v) = %v", tc.x1, tc.x2, y)
		}
	}
}
