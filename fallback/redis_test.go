package fallback_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/infermesh/infermesh/fallback"
	"github.com/infermesh/infermesh/internal/redistest"
)

func redisCache(t *testing.T, rs *redistest.Server, cfg fallback.CacheConfig) *fallback.Cache {
	t.Helper()
	cfg.Redis = rs.Client()
	cfg.RedisPrefix = "test:" + t.Name() + ":"
	c, err := fallback.NewCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tenantRequest(t *testing.T, tenant, path string) *fallback.Request {
	t.Helper()
	body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	hr, _ := http.NewRequest(http.MethodPost, "https://api.example"+path, strings.NewReader(body))
	return &fallback.Request{HTTP: hr, Body: []byte(body), Operation: "/chat/completions", Model: "gpt-4o", Tenant: tenant}
}

const cachedReply = `{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"kept"},"finish_reason":"stop"}]}`

// TestRedisCacheSharedByReplicas: with Redis, one replica's last good answer serves
// another replica (one that started later), for the same tenant only; replies expire with
// the TTL and the oldest go past MaxEntries.
func TestRedisCacheSharedByReplicas(t *testing.T) {
	rs := redistest.Start(t)
	a := redisCache(t, rs, fallback.CacheConfig{TTL: time.Second, MaxEntries: 2})
	a.Store(tenantRequest(t, "tenant-a", "/v1/chat/completions"), []byte(cachedReply))
	b := redisCache(t, rs, fallback.CacheConfig{TTL: time.Second, MaxEntries: 2}) // a replica started later
	resp, err := b.Serve(context.Background(), tenantRequest(t, "tenant-a", "/v1/chat/completions"))
	if err != nil {
		t.Fatalf("the other replica did not serve tenant A's answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != cachedReply || resp.Header.Get(fallback.HeaderDegraded) != "cache" {
		t.Fatalf("served %s %v", body, resp.Header)
	}
	if _, err := b.Serve(context.Background(), tenantRequest(t, "tenant-b", "/v1/chat/completions")); !errors.Is(err, fallback.ErrCacheMiss) {
		t.Errorf("tenant B: err %v, want a miss", err)
	}
	batch := tenantRequest(t, "tenant-a", "/v1/batches")
	batch.Operation = "/batches"
	a.Store(batch, []byte(`{"id":"batch_1"}`))
	if n := a.Len(); n != 1 {
		t.Errorf("%d replies after a batch create was offered, want 1", n)
	}
	for _, p := range []string{"/v1/x/chat/completions", "/v1/y/chat/completions"} {
		a.Store(tenantRequest(t, "tenant-a", p), []byte(cachedReply))
	}
	if n := a.Len(); n != 2 {
		t.Errorf("%d replies kept, want the bound 2", n)
	}
	if _, err := b.Serve(context.Background(), tenantRequest(t, "tenant-a", "/v1/chat/completions")); !errors.Is(err, fallback.ErrCacheMiss) {
		t.Errorf("the oldest reply outlived the bound: %v", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := b.Serve(context.Background(), tenantRequest(t, "tenant-a", "/v1/y/chat/completions")); !errors.Is(err, fallback.ErrCacheMiss) {
		t.Errorf("a reply outlived its TTL: %v", err)
	}
}

// TestRedisCacheDown: a Redis that does not answer costs a store and a lookup (a miss)
// within RedisTimeout, never a call.
func TestRedisCacheDown(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: redistest.FreeAddr(t), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer client.Close()
	c, err := fallback.NewCache(fallback.CacheConfig{Redis: client, RedisTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Store(tenantRequest(t, "t", "/v1/chat/completions"), []byte(cachedReply))
	if _, err := c.Serve(context.Background(), tenantRequest(t, "t", "/v1/chat/completions")); !errors.Is(err, fallback.ErrCacheMiss) {
		t.Errorf("err %v, want a miss", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a Redis that is down held the cache %v", took)
	}
	lax := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer lax.Close()
	if _, err := fallback.NewCache(fallback.CacheConfig{Redis: lax}); err == nil || !strings.Contains(err.Error(), "ContextTimeoutEnabled") {
		t.Errorf("a client without ContextTimeoutEnabled: err %v, want one naming the option", err)
	}
}
