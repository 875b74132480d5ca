package oip_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/grpcinfer/oip"
	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// scriptConn is an in-memory grpc.ClientConnInterface for ModelStreamInfer, so that the
// stream policy's timers run on synctest's clock. The n-th stream opened is fed by script(n,
// feed): each message sent on feed reaches the client's Recv; closing feed ends the stream
// well; a script that neither sends nor closes stalls the stream until its context ends. A
// script returns when ctx, the stream's context, ends.
type scriptConn struct {
	script func(ctx context.Context, n int, feed chan<- *inferencepb.ModelStreamInferResponse)

	mu      sync.Mutex
	opened  int
	streams []*scriptStream
}

func (c *scriptConn) Invoke(context.Context, string, any, any, ...grpc.CallOption) error {
	return errors.New("scriptConn: unary calls are not scripted")
}

func (c *scriptConn) NewStream(ctx context.Context, _ *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	if method != "/inference.GRPCInferenceService/ModelStreamInfer" {
		return nil, errors.New("scriptConn: unexpected method " + method)
	}
	c.mu.Lock()
	c.opened++
	n := c.opened
	s := &scriptStream{ctx: ctx, feed: make(chan *inferencepb.ModelStreamInferResponse)}
	c.streams = append(c.streams, s)
	c.mu.Unlock()
	go c.script(ctx, n, s.feed)
	return s, nil
}

type scriptStream struct {
	ctx  context.Context
	feed chan *inferencepb.ModelStreamInferResponse
}

func (s *scriptStream) Header() (metadata.MD, error) { return nil, nil }
func (s *scriptStream) Trailer() metadata.MD         { return nil }
func (s *scriptStream) CloseSend() error             { return nil }
func (s *scriptStream) Context() context.Context     { return s.ctx }
func (s *scriptStream) SendMsg(any) error            { return nil }

func (s *scriptStream) RecvMsg(m any) error {
	select {
	case r, ok := <-s.feed:
		if !ok {
			return io.EOF
		}
		proto.Reset(m.(proto.Message))
		proto.Merge(m.(proto.Message), r)
		return nil
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err() // as gRPC reports a cancelled stream
	}
}

// feedResponse sends one token response on feed; it reports false when the stream's context
// ended first.
func feedResponse(ctx context.Context, feed chan<- *inferencepb.ModelStreamInferResponse, word string) bool {
	m, err := oip.EncodeResponse(&oip.InferResponse{ModelName: "gen", Outputs: []oip.Tensor{
		oip.NewTensor("token", []int64{1}, [][]byte{[]byte(word)})}})
	if err != nil {
		panic(err)
	}
	select {
	case feed <- &inferencepb.ModelStreamInferResponse{InferResponse: m}:
		return true
	case <-ctx.Done():
		return false
	}
}

// pause waits for d; it reports false when ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// TestStreamTimeoutsSynctest runs the stream policy on synctest's clock: a first attempt that
// never answers is abandoned at FirstResponseTimeout and retried; the retry answers; the idle
// clock runs only while the caller waits in Recv; a stall ends at exactly IdleTimeout with a
// StreamError that counts the response delivered.
func TestStreamTimeoutsSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const first, idle = 10 * time.Second, 5 * time.Second
		conn := &scriptConn{script: func(ctx context.Context, n int, feed chan<- *inferencepb.ModelStreamInferResponse) {
			// The first stream never answers; the second answers, pauses longer than the idle
			// timeout while the caller is busy, answers again and stalls.
			if n == 2 && feedResponse(ctx, feed, "a") && pause(ctx, 15*time.Second) {
				feedResponse(ctx, feed, "b")
			}
			<-ctx.Done()
		}}
		c, err := oip.NewStreamClient(conn, oip.StreamConfig{FirstResponseTimeout: first, IdleTimeout: idle,
			Policy: breaker.Config{MaxAttempts: 2, Backoff: breaker.Backoff{Initial: time.Second}}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		s, err := c.Infer(t.Context(), prompt("x"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if took := time.Since(start); took < first || took > first+time.Second {
			t.Fatalf("Infer took %v: want the first-response timeout %v plus at most 1s of backoff", took, first)
		}
		synctest.Wait()
		if err := conn.streams[0].ctx.Err(); err == nil {
			t.Fatal("the abandoned first stream was not cancelled")
		}
		if r, err := s.Recv(); err != nil || r.ModelName != "gen" {
			t.Fatalf("first Recv = %v, %v", r, err)
		}
		time.Sleep(20 * time.Second) // the caller is busy: the idle clock must not run
		if _, err := s.Recv(); err != nil {
			t.Fatalf("second Recv after a busy caller = %v, want the response sent meanwhile", err)
		}
		stalled := time.Now()
		_, err = s.Recv()
		var se *oip.StreamError
		if !errors.As(err, &se) || !errors.Is(err, oip.ErrIdleTimeout) || se.Delivered != 2 || se.Attempts != 2 {
			t.Fatalf("Recv on a stall = %v, want ErrIdleTimeout after 2 responses in 2 attempts", err)
		}
		if waited := time.Since(stalled); waited != idle {
			t.Fatalf("the stall ended after %v, want exactly the idle timeout %v", waited, idle)
		}
	})
}

// TestStreamMaxDurationSynctest bounds a stream that keeps producing with MaxStreamDuration.
func TestStreamMaxDurationSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn := &scriptConn{script: func(ctx context.Context, _ int, feed chan<- *inferencepb.ModelStreamInferResponse) {
			for range 100 {
				if !feedResponse(ctx, feed, "t") || !pause(ctx, 4*time.Second) {
					return
				}
			}
		}}
		c, err := oip.NewStreamClient(conn, oip.StreamConfig{IdleTimeout: 5 * time.Second, MaxStreamDuration: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		s, err := c.Infer(t.Context(), prompt("x"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		n := 0
		for ; n < 100; n++ {
			if _, err = s.Recv(); err != nil {
				break
			}
		}
		if !errors.Is(err, oip.ErrMaxStreamDuration) || n != 8 {
			t.Fatalf("after %d responses: %v, want ErrMaxStreamDuration after 8 (one every 4s for 30s)", n, err)
		}
		if took := time.Since(start); took != 30*time.Second {
			t.Fatalf("the stream lasted %v, want 30s", took)
		}
	})
}

// TestStreamRetryExhaustedSynctest gives up after MaxAttempts first-response timeouts, with a
// StreamError that wraps the breaker's error and the timeout.
func TestStreamRetryExhaustedSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conn := &scriptConn{script: func(ctx context.Context, _ int, _ chan<- *inferencepb.ModelStreamInferResponse) { <-ctx.Done() }}
		c, err := oip.NewStreamClient(conn, oip.StreamConfig{FirstResponseTimeout: time.Second,
			Policy: breaker.Config{MaxAttempts: 3, Backoff: breaker.Backoff{Initial: time.Millisecond}}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Infer(t.Context(), prompt("x"))
		var se *oip.StreamError
		if !errors.As(err, &se) || se.Attempts != 3 || se.Delivered != 0 ||
			!errors.Is(err, oip.ErrFirstResponseTimeout) || !errors.Is(err, breaker.ErrRetriesExhausted) {
			t.Fatalf("Infer = %v, want ErrFirstResponseTimeout after 3 attempts", err)
		}
	})
}
