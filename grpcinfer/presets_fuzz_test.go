package grpcinfer_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/infermesh/infermesh/grpcinfer"
)

// FuzzServiceConfig: DialOptions never panics on a service config, accepts exactly the JSON
// objects, and with the Policy on accepts none that asks gRPC to retry or hedge; with NoPolicy
// it accepts every JSON object.
func FuzzServiceConfig(f *testing.F) {
	f.Add(`{"methodConfig":[{"name":[{}],"timeout":"1s"}]}`)
	f.Add(`{"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":2}}]}`)
	f.Add(`{"MethodConfig":[{"HedgingPolicy":{}}],"loadBalancingConfig":[{"round_robin":{}}]}`)
	f.Add(`{"methodConfig":[{"retryPolicy":null}]}`)
	f.Add(`{"methodConfig":{}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, sc string) {
		if sc == "" {
			return // no service config at all
		}
		var top map[string]any
		isObject := json.Unmarshal([]byte(sc), &top) == nil
		_, errOff := grpcinfer.DialOptions(grpcinfer.ClientConfig{NoPolicy: true, ServiceConfig: sc})
		if (errOff == nil) != isObject {
			t.Fatalf("NoPolicy, %q: err = %v, JSON object %v", sc, errOff, isObject)
		}
		if _, err := grpcinfer.DialOptions(grpcinfer.ClientConfig{ServiceConfig: sc}); err == nil && asksRetries(top) {
			t.Fatalf("Policy on: accepted %q, which asks gRPC to retry", sc)
		}
	})
}

// asksRetries reports whether a decoded service config has a non-null retryPolicy or
// hedgingPolicy in a methodConfig entry (keys matched as encoding/json matches them).
func asksRetries(top map[string]any) bool {
	for k, v := range top {
		list, ok := v.([]any)
		if !strings.EqualFold(k, "methodConfig") || !ok {
			continue
		}
		for _, e := range list {
			mc, _ := e.(map[string]any)
			for mk, mv := range mc {
				if (strings.EqualFold(mk, "retryPolicy") || strings.EqualFold(mk, "hedgingPolicy")) && mv != nil {
					return true
				}
			}
		}
	}
	return false
}
