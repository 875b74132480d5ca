package budgets

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infermesh/infermesh/quota"
)

// redisPrefix starts the quota's Redis keys in these measurements; the heartbeat's key is
// <prefix>replicas (see package quota).
const redisPrefix = "budgets:quota:"

// onCall marks the context of a measured call, so that the round trip counter can tell the
// Redis commands made on a call's path from those of the quota's background worker.
type onCall struct{}

// roundTrips is a go-redis hook that counts the quota's round trips: its scripts, each
// sent alone (EVALSHA, or EVAL when Redis does not know the script yet). Those sent on a
// measured call's path are counted in call, the rest by the quota's background worker: its
// batched true-ups in trueUps, its heartbeat in beats. Anything else (a new connection's
// handshake, INFO) is counted in other.
type roundTrips struct {
	call, trueUps, beats, other atomic.Int64
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(ctx, cmd)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.other.Add(1)
		return next(ctx, cmds)
	}
}

func (h *roundTrips) count(ctx context.Context, cmd redis.Cmder) {
	args := cmd.Args()
	switch name := cmd.Name(); {
	case name != "evalsha" && name != "eval":
		h.other.Add(1)
	case ctx.Value(onCall{}) != nil:
		h.call.Add(1)
	case len(args) > 3 && fmt.Sprint(args[3]) == redisPrefix+"replicas":
		h.beats.Add(1) // EVALSHA sha numkeys <prefix>replicas ...
	default:
		h.trueUps.Add(1)
	}
}

func (h *roundTrips) reset() {
	for _, c := range []*atomic.Int64{&h.call, &h.trueUps, &h.beats, &h.other} {
		c.Store(0)
	}
}

// scriptCalls returns how many scripts Redis has run (EVALSHA and EVAL), from INFO
// commandstats: the server's count of the quota's round trips.
func scriptCalls(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	var n int64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, stats, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		for _, f := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				c, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("INFO commandstats: %q: %w", sc.Text(), err)
				}
				n += c
			}
		}
	}
	return n, sc.Err()
}

// sharedFigures are budget 6a's counts.
type sharedFigures struct {
	calls                int64 // calls through the shared quota
	callRTs, trueUps     int64 // round trips on the calls' path; the worker's true-ups
	beats, other         int64 // the worker's heartbeats; other commands (handshakes)
	serverScripts        int64 // scripts Redis ran meanwhile (INFO commandstats)
	admittedShared       int64 // admissions the shared quota decided
	modeChanges          int64
	elapsed              time.Duration
	p50Added, p99Added   time.Duration // pooled over the rounds
	p50s, p99s           [2]time.Duration
	p50AddedR, p99AddedR spread // per round, µs
}

// measureSharedQuota is budget 6a: unary chat calls through llmclient with a quota shared
// through rdb, interleaved with the same calls through llmclient without a quota, both over
// the canned transport. It counts Redis round trips per call and the latency they add.
//
// redisTimeout is the quota's Config.RedisTimeout (0: its default).
func measureSharedQuota(ctx context.Context, rdb *redis.Client, redisTimeout time.Duration, p plan) (verdict, sharedFigures, error) {
	var f sharedFigures
	hook := &roundTrips{}
	rdb.AddHook(hook)
	var admittedShared, modeChanges atomic.Int64
	lim, err := quota.New(quota.Config{Limits: generousLimits(), Redis: rdb, Prefix: redisPrefix, RedisTimeout: redisTimeout, Hooks: quota.Hooks{
		Admitted: func(_ string, _ time.Duration, shared bool) {
			if shared {
				admittedShared.Add(1)
			}
		},
		ModeChanged: func(bool, error) { modeChanges.Add(1) },
	}})
	if err != nil {
		return verdict{}, f, err
	}
	defer lim.Close()
	base := cannedBase(false)
	without, err := newLLMClient(base, nil)
	if err != nil {
		return verdict{}, f, err
	}
	defer without.CloseIdleConnections()
	with, err := newLLMClient(base, lim)
	if err != nil {
		return verdict{}, f, err
	}
	defer with.CloseIdleConnections()
	url := "http://" + cannedHost + "/v1"
	plain, shared := newSDK(without, url, false), newSDK(with, url, false)
	tagged := context.WithValue(ctx, onCall{}, true)
	var calls atomic.Int64
	cs := []contender{
		{"infermesh", func() error { return plain.unary(ctx) }},
		{"infermesh+shared quota", func() error { calls.Add(1); return shared.unary(tagged) }},
	}
	for _, c := range cs { // the script is loaded (NOSCRIPT, then EVAL) during the warm-up
		for range p.warmup {
			if err := c.call(); err != nil {
				return verdict{}, f, fmt.Errorf("%s: warm-up: %w", c.name, err)
			}
		}
	}
	p.warmup = 0
	if err := waitFlushed(hook); err != nil {
		return verdict{}, f, err
	}
	before, err := scriptCalls(ctx, rdb)
	if err != nil {
		return verdict{}, f, err
	}
	hook.reset()
	calls.Store(0)
	admittedShared.Store(0)
	start := time.Now()
	rounds, err := interleave(cs, p)
	if err != nil {
		return verdict{}, f, err
	}
	f.elapsed = time.Since(start)
	if err := waitFlushed(hook); err != nil {
		return verdict{}, f, err
	}
	after, err := scriptCalls(ctx, rdb)
	if err != nil {
		return verdict{}, f, err
	}
	f.calls, f.callRTs, f.trueUps, f.beats = calls.Load(), hook.call.Load(), hook.trueUps.Load(), hook.beats.Load()
	f.other, f.serverScripts = hook.other.Load(), after-before
	f.admittedShared, f.modeChanges = admittedShared.Load(), modeChanges.Load()
	for i := range 2 {
		lat := allLatencies(rounds, i)
		f.p50s[i], f.p99s[i] = quantile(lat, 0.5), quantile(lat, 0.99)
	}
	f.p50Added, f.p99Added = f.p50s[1]-f.p50s[0], f.p99s[1]-f.p99s[0]
	f.p50AddedR = perRound(rounds, func(r []sample) float64 { return µs(quantile(r[1].lat, 0.5) - quantile(r[0].lat, 0.5)) })
	f.p99AddedR = perRound(rounds, func(r []sample) float64 { return µs(quantile(r[1].lat, 0.99) - quantile(r[0].lat, 0.99)) })
	rts := float64(f.callRTs) / float64(max(f.calls, 1))
	return verdict{
		name:   "shared quota: Redis round trips per admission",
		budget: "one round trip per call on the call's path (true-ups batched by the worker)",
		ratio:  spread{rts, rts, rts},
		floor:  1,
		limit:  1,
		lines: []string{
			describe("go-openai + llmclient", rounds, 0),
			describe("go-openai + llmclient + shared quota", rounds, 1),
			fmt.Sprintf("%d calls: %d round trips on the calls' path (%.3f per call), %d admitted by the shared quota, %d mode changes",
				f.calls, f.callRTs, rts, f.admittedShared, f.modeChanges),
			fmt.Sprintf("worker: %d true-up round trips (%.3f per call), %d heartbeats in %.1fs; other commands %d; Redis ran %d scripts (INFO commandstats)",
				f.trueUps, float64(f.trueUps)/float64(max(f.calls, 1)), f.beats, f.elapsed.Seconds(), f.other, f.serverScripts),
			fmt.Sprintf("latency p50 %.1f -> %.1f µs (added %+.1f; per round %+.1f, %+.1f to %+.1f)",
				µs(f.p50s[0]), µs(f.p50s[1]), µs(f.p50Added), f.p50AddedR.med, f.p50AddedR.lo, f.p50AddedR.hi),
			fmt.Sprintf("latency p99 %.1f -> %.1f µs (added %+.1f; per round %+.1f, %+.1f to %+.1f)",
				µs(f.p99s[0]), µs(f.p99s[1]), µs(f.p99Added), f.p99AddedR.med, f.p99AddedR.lo, f.p99AddedR.hi),
		},
	}, f, nil
}

// waitFlushed waits until the quota worker has sent what the calls queued: no true-up for
// 200 ms. The worker sends as soon as it is woken, so this is quick.
func waitFlushed(h *roundTrips) error {
	last := h.trueUps.Load()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		n := h.trueUps.Load()
		if n == last {
			return nil
		}
		last = n
	}
	return fmt.Errorf("the quota worker kept sending true-ups for 10s after the calls ended")
}
