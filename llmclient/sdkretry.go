package llmclient

import (
	"crypto/sha256"
	"sync"
	"time"
)

// judged remembers, for a short while, the calls infermesh failed with a Go error (no
// answer to hand back: an open breaker, a first-token timeout, a connection that kept
// failing). The official SDKs (openai-go and its siblings) retry any call that ended
// without a response, whatever the error, and no header can stop them then; each of
// their tries carries X-Stainless-Retry-Count. A retry of a call infermesh has already
// judged gets the same error at once, so that the SDK's retries never multiply
// infermesh's attempts.
type judged struct {
	mu    sync.Mutex
	m     map[judgedKey]judgedFailure
	order []judgedKey // insertion order, for the bound
}

type judgedKey [sha256.Size]byte

type judgedFailure struct {
	err   error
	until time.Time
}

const (
	judgedTTL = 2 * time.Minute // longer than the SDKs' retry waits
	judgedMax = 1024
)

// keyOf identifies a logical call by what the SDK sends again on each try: method, URL,
// tenant and body. It is the zero key for a caller that is not a retrying SDK.
func (c *call) keyOf() judgedKey {
	if c.req.Header.Get(headerSDKRetry) == "" {
		return judgedKey{}
	}
	h := sha256.New()
	for _, s := range []string{c.req.Method, c.req.URL.String(), c.tenant()} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(c.orig)
	var k judgedKey
	h.Sum(k[:0])
	return k
}

// repeat returns the error of the call c repeats, when c is an SDK's retry of a call
// infermesh failed moments ago.
func (j *judged) repeat(c *call) (error, bool) {
	c.judgedKey = c.keyOf()
	if c.judgedKey == (judgedKey{}) || c.req.Header.Get(headerSDKRetry) == "0" {
		return nil, false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	f, ok := j.m[c.judgedKey]
	if !ok || time.Now().After(f.until) {
		return nil, false
	}
	return f.err, true
}

// remember keeps the error a call ended with, for the SDK's retries of it.
func (j *judged) remember(c *call, err error) {
	if c.judgedKey == (judgedKey{}) {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.m == nil {
		j.m = make(map[judgedKey]judgedFailure)
	}
	if _, ok := j.m[c.judgedKey]; !ok {
		if len(j.order) >= judgedMax {
			delete(j.m, j.order[0])
			j.order = j.order[1:]
		}
		j.order = append(j.order, c.judgedKey)
	}
	j.m[c.judgedKey] = judgedFailure{err: err, until: time.Now().Add(judgedTTL)}
}
