// Package redisopt holds what the packages that use a caller's Redis client (quota, the
// fallback cache) check of it.
package redisopt

import "github.com/redis/go-redis/v9"

// HonoursDeadlines reports whether a client's commands end at their context's deadline:
// go-redis otherwise bounds a read by its ReadTimeout (5 s by default) only, and a slow
// Redis could hold a call that long. Clients of other implementations are trusted.
func HonoursDeadlines(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}
