package quota_test

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/infermesh/infermesh/internal/redistest"
)

var startRedis = redistest.Start

// hook calls itself with every command a client sends.
type hook func(redis.Cmder)

func (h hook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h(cmd); return next(ctx, cmd) }
}
func (h hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h(c)
		}
		return next(ctx, cmds)
	}
}
