package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// demo is the client side of the demo and what it prints to.
type demo struct {
	out    io.Writer
	s      *server
	client *oip.Client
	gen    *oip.StreamClient
	health healthpb.HealthClient
}

// run starts the server on addr, calls it, drains it while a generation streams and returns;
// it writes what happens to out.
func run(ctx context.Context, addr string, out io.Writer) error {
	s, err := start(addr, out, 200*time.Millisecond, 10*time.Second, 25*time.Millisecond)
	if err != nil {
		return err
	}
	defer s.gs.Stop() // no-op after a drain; stops the server on early returns

	// Client side: the client preset with a breaker policy and zstd, and the streaming client.
	dopts, err := grpcinfer.DialOptions(grpcinfer.ClientConfig{
		Policy:     breaker.Config{Name: "xor-mlp", MaxAttempts: 3, Backoff: breaker.Backoff{Initial: 20 * time.Millisecond}},
		Compressor: grpcinfer.Zstd,
		Default:    grpcinfer.MethodPolicy{Timeout: 5 * time.Second, PerTryTimeout: 2 * time.Second},
	})
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(s.addr, append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return err
	}
	defer cc.Close()
	gen, err := oip.NewStreamClient(cc, oip.StreamConfig{FirstResponseTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		Policy: breaker.Config{Name: "generator", Backoff: breaker.Backoff{Initial: 20 * time.Millisecond}}})
	if err != nil {
		return err
	}
	d := &demo{out: out, s: s, client: oip.NewClient(cc), gen: gen, health: healthpb.NewHealthClient(cc)}

	for _, step := range []func(context.Context) error{d.load, d.xor, d.generate, d.statistics, d.drain} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) status(ctx context.Context) string {
	r, err := d.health.Check(ctx, &healthpb.HealthCheckRequest{Service: "inference.GRPCInferenceService"})
	if err != nil {
		return "error: " + err.Error()
	}
	return r.Status.String()
}

// load opens the health gate, as a server does once its models are in memory.
func (d *demo) load(ctx context.Context) error {
	ready, err := d.client.ServerReady(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "health before the model is loaded: %s (ServerReady %v)\n", d.status(ctx), ready)
	d.s.gate.SetReady(true)
	if ready, err = d.client.ServerReady(ctx); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "health after loading: %s (ServerReady %v)\n", d.status(ctx), ready)
	return nil
}

// xor calls the XOR model in raw and typed form, and once with a malformed request.
func (d *demo) xor(ctx context.Context) error {
	inputs := []float32{0, 0, 0, 1, 1, 0, 1, 1}
	for _, raw := range []bool{true, false} {
		var trailer metadata.MD
		resp, err := d.client.Infer(ctx, &oip.InferRequest{
			ModelName: "xor-mlp", ID: fmt.Sprintf("req-raw-%v", raw), Raw: raw,
			Inputs: []oip.Tensor{oip.NewTensor("x", []int64{4, 2}, inputs)},
		}, grpc.Trailer(&trailer))
		if err != nil {
			return err
		}
		prob, err := oip.Output[float32](resp, "probability")
		if err != nil {
			return err
		}
		label, err := oip.Output[int64](resp, "label")
		if err != nil {
			return err
		}
		usage, _ := grpcinfer.UsageFromTrailer(trailer)
		fmt.Fprintf(d.out, "%s (model version %s, raw contents %v, usage %d in / %d out):\n", resp.ID, resp.ModelVersion, resp.Raw, usage.InputTokens, usage.OutputTokens)
		for i := range label {
			fmt.Fprintf(d.out, "  xor(%v, %v) = %d  (p=%.4f)\n", inputs[2*i], inputs[2*i+1], label[i], prob[i])
		}
	}
	// A malformed request: the adapter names the tensor and the client gets INVALID_ARGUMENT.
	_, err := d.client.Infer(ctx, &oip.InferRequest{ModelName: "xor-mlp",
		Inputs: []oip.Tensor{oip.NewTensor("x", []int64{1, 3}, []float32{1, 0, 1})}})
	fmt.Fprintf(d.out, "bad shape: %v\n", err)
	return nil
}

func prompt(text string) *oip.InferRequest {
	return &oip.InferRequest{ModelName: "generator", ID: "gen-1",
		Inputs: []oip.Tensor{oip.NewTensor("text_input", []int64{1}, [][]byte{[]byte(text)})}}
}

// readTokens reads a generation to its end and returns its text and response count.
func readTokens(s *oip.InferStream) (string, int, error) {
	defer s.Close()
	var b strings.Builder
	for n := 0; n < 1000; n++ {
		r, err := s.Recv()
		if err == io.EOF {
			return b.String(), n, nil
		}
		if err != nil {
			return b.String(), n, err
		}
		tok, err := oip.Output[[]byte](r, "text_output")
		if err != nil {
			return b.String(), n, err
		}
		b.Write(tok[0])
	}
	return b.String(), 1000, errors.New("generation did not end")
}

// generate streams a generation over ModelStreamInfer.
func (d *demo) generate(ctx context.Context) error {
	s, err := d.gen.Infer(ctx, prompt("infermesh keeps streamed generations alive"))
	if err != nil {
		return err
	}
	text, n, err := readTokens(s)
	if err != nil {
		return err
	}
	u, _ := s.Usage()
	fmt.Fprintf(d.out, "generator streamed %q in %d responses (usage %d in / %d out)\n", text, n, u.InputTokens, u.OutputTokens)
	return nil
}

// statistics shows what the server measured on the calls so far.
func (d *demo) statistics(ctx context.Context) error {
	r, err := d.client.Service().ModelStatistics(ctx, &inferencepb.ModelStatisticsRequest{})
	if err != nil {
		return err
	}
	for _, m := range r.ModelStats {
		fmt.Fprintf(d.out, "statistics of %s version %s: %d succeeded, %d failed\n", m.Name, m.Version,
			m.InferenceStats.Success.Count, m.InferenceStats.Fail.Count)
	}
	return nil
}

// drain drains the server while a generation streams: health turns NOT_SERVING and a new call
// is refused with UNAVAILABLE at once, while the generation in flight finishes.
func (d *demo) drain(ctx context.Context) error {
	s, err := d.gen.Infer(ctx, prompt("one two three four five six seven eight nine ten eleven twelve"))
	if err != nil {
		return err
	}
	start := time.Now()
	drained := make(chan error, 1)
	go func() { drained <- d.s.drain(ctx) }()
	during := d.status(ctx)
	for i := 0; i < 100 && during == "SERVING"; i++ {
		time.Sleep(5 * time.Millisecond)
		during = d.status(ctx)
	}
	ready, err := d.client.ServerReady(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "health during the drain: %s (ServerReady %v)\n", during, ready)
	_, err = d.client.Infer(ctx, &oip.InferRequest{ModelName: "xor-mlp",
		Inputs: []oip.Tensor{oip.NewTensor("x", []int64{1, 2}, []float32{0, 1})}})
	fmt.Fprintf(d.out, "a new call during the drain: %s\n", status.Code(err))
	text, n, err := readTokens(s)
	if err != nil {
		return fmt.Errorf("the generation in flight during the drain: %w", err)
	}
	fmt.Fprintf(d.out, "the generation in flight finished: %d responses, ending %q\n", n, text[max(len(text)-10, 0):])
	if err := <-drained; err != nil {
		return err
	}
	fmt.Fprintf(d.out, "drained and stopped after %v\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}
