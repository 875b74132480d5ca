package oip

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infermesh/infermesh/grpcinfer/oip/inferencepb"
)

// durationStat is a cumulative count and duration, as the protocol's StatisticDuration.
type durationStat struct {
	count, ns atomic.Uint64
}

func (d *durationStat) add(t time.Duration) {
	d.count.Add(1)
	d.ns.Add(uint64(max(t, 0)))
}

func (d *durationStat) pb() *inferencepb.StatisticDuration {
	return &inferencepb.StatisticDuration{Count: d.count.Load(), Ns: d.ns.Load()}
}

// modelStats are the statistics of one model version, measured on the requests it served.
type modelStats struct {
	success, fail                                    durationStat
	queue, computeInput, computeInfer, computeOutput durationStat
	inferences                                       atomic.Uint64
	last                                             atomic.Int64 // Unix milliseconds
}

// record adds a finished request: its whole duration as a success or a failure and, for a
// success, the time of each phase (as Triton, which times the phases of successful requests).
func (st *modelStats) record(inf *inference, err error) {
	end := time.Now()
	st.last.Store(end.UnixMilli())
	if err != nil {
		st.fail.add(end.Sub(inf.received))
		return
	}
	st.success.add(end.Sub(inf.received))
	st.queue.add(inf.queue)
	st.computeInput.add(inf.input)
	st.computeInfer.add(inf.infer)
	st.computeOutput.add(inf.output)
	st.inferences.Add(1)
}

func (st *modelStats) pb(name, version string) *inferencepb.ModelStatistics {
	n := st.inferences.Load()
	return &inferencepb.ModelStatistics{
		Name: name, Version: version, LastInference: uint64(max(st.last.Load(), 0)),
		InferenceCount: n, ExecutionCount: n,
		InferenceStats: &inferencepb.InferStatistics{
			Success: st.success.pb(), Fail: st.fail.pb(), Queue: st.queue.pb(),
			ComputeInput: st.computeInput.pb(), ComputeInfer: st.computeInfer.pb(), ComputeOutput: st.computeOutput.pb(),
			CacheHit: &inferencepb.StatisticDuration{}, CacheMiss: &inferencepb.StatisticDuration{},
		},
	}
}

// ModelStatistics reports what the server measured on the requests of ModelInfer and
// ModelStreamInfer, per model version: successes and failures with their durations (from
// receipt of the request to its last response or its error), and for successes the time
// queued (from receipt until decoding starts, which for a request of a stream includes the
// wait for a free slot, see ServerConfig.MaxStreamRequests), to decode and check the inputs
// (compute_input), in the model (compute_infer, less the time spent in the Sender) and to
// check and encode the outputs (compute_output). inference_count and execution_count both
// count successful requests (the server does not batch them); nothing is cached, so the cache
// statistics stay zero. A request refused before it reached a model version (unknown model or
// version) is not counted. An empty name reports every model; an unknown model or version is
// NOT_FOUND.
func (s *Server) ModelStatistics(_ context.Context, req *inferencepb.ModelStatisticsRequest) (*inferencepb.ModelStatisticsResponse, error) {
	names := s.names
	if req.GetName() != "" {
		if _, _, err := s.lookup(req.GetName(), req.GetVersion()); err != nil {
			return nil, err
		}
		names = []string{req.GetName()}
	} else if req.GetVersion() != "" {
		return nil, status.Errorf(codes.InvalidArgument, "oip: ModelStatistics: version %q is given without a model name", echo(req.GetVersion()))
	}
	out := &inferencepb.ModelStatisticsResponse{}
	for _, name := range names {
		sm := s.models[name]
		for _, v := range sm.versions {
			if req.GetVersion() != "" && len(sm.meta.Versions) > 0 && v != req.GetVersion() {
				continue
			}
			out.ModelStats = append(out.ModelStats, sm.stats[v].pb(name, v))
		}
	}
	return out, nil
}
