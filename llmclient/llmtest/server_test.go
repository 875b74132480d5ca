package llmtest_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infermesh/infermesh/llmclient/llmtest"
)

func TestRequestsRecordsEverything(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Errorf("URL = %q", srv.URL)
	}
	before := time.Now()
	srv.Enqueue(llmtest.Status(503))
	req, _ := http.NewRequest("POST", srv.URL+llmtest.PathChatCompletions+"?a=1", strings.NewReader(chatBody))
	req.Header.Set("Authorization", "Bearer sk-1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	do(t, srv.Client(), "GET", srv.URL+"/nowhere", "")
	do(t, srv.Client(), "GET", srv.URL+llmtest.PathModels, "")

	recs := srv.Requests()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	r := recs[0]
	if r.Seq != 1 || r.Method != "POST" || r.Path != llmtest.PathChatCompletions || r.RawQuery != "a=1" ||
		string(r.Body) != chatBody || r.Header.Get("Authorization") != "Bearer sk-1" || r.Fault.Kind != llmtest.KindStatus {
		t.Errorf("record 0 = %+v", r)
	}
	if r.Time.Before(before) || r.Time.After(time.Now()) {
		t.Errorf("arrival time %v is outside the test", r.Time)
	}
	if recs[1].Path != "/nowhere" || recs[1].Seq != 2 || recs[2].Method != "GET" || recs[2].Seq != 3 {
		t.Errorf("records 1, 2 = %+v, %+v", recs[1], recs[2])
	}
	// Records are copies.
	recs[0].Body[0] = 'X'
	recs[0].Header.Set("Authorization", "changed")
	if r := srv.Requests()[0]; r.Body[0] != '{' || r.Header.Get("Authorization") != "Bearer sk-1" {
		t.Error("changing a returned record changed the server's record")
	}
}

func TestUnstartedServerServesInMemory(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewUnstartedServer()
	defer srv.Close()
	if srv.URL != llmtest.InMemoryURL {
		t.Errorf("URL = %q", srv.URL)
	}
	if r := post(t, srv, llmtest.PathChatCompletions, chatBody); r.status != 200 {
		t.Fatalf("in memory: status %d", r.status)
	}
	srv.Start()
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Errorf("URL after Start = %q", srv.URL)
	}
	if r := post(t, srv, llmtest.PathChatCompletions, chatBody); r.status != 200 {
		t.Fatalf("over loopback: status %d", r.status)
	}
	// The in-memory transport still reaches the server, whatever the host.
	c := &http.Client{Transport: srv.Transport()}
	if r := do(t, c, "GET", "http://any.example:1234"+llmtest.PathModels, ""); r.status != 200 {
		t.Errorf("in memory after Start: status %d", r.status)
	}
	srv.Close()
	srv.Close() // idempotent
	_, err := c.Get(srv.URL + llmtest.PathModels)
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("after Close: error %v, want net.ErrClosed", err)
	}
}

func TestStartTwicePanics(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t)
	defer func() {
		if recover() == nil {
			t.Error("second Start did not panic")
		}
	}()
	srv.Start()
}

func TestHandlerMountedElsewhere(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewUnstartedServer(llmtest.WithChunks(1, "one "))
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	r := do(t, hs.Client(), "POST", hs.URL+llmtest.PathChatCompletions, chatBody)
	if r.status != 200 || !strings.Contains(r.body, `"content":"one "`) {
		t.Errorf("%d %s", r.status, r.body)
	}
	// A reset hijacks the connection of the other server too.
	srv.Enqueue(llmtest.Reset())
	_, err := hs.Client().Post(hs.URL+llmtest.PathChatCompletions, "application/json", strings.NewReader(chatBody))
	if err == nil {
		t.Error("reset through a mounted handler: no error")
	}
	if len(srv.Requests()) != 2 {
		t.Errorf("%d records", len(srv.Requests()))
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		order []string
	)
	mw := func(name string) func(http.Handler) http.Handler {
		return func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				w.Header().Set("X-"+name, "1")
				h.ServeHTTP(w, r)
			})
		}
	}
	srv := llmtest.NewTestServer(t, llmtest.WithMiddleware(mw("Outer"), mw("Inner")))
	r := post(t, srv, llmtest.PathChatCompletions, chatBody)
	mu.Lock()
	defer mu.Unlock()
	if r.status != 200 || r.header.Get("X-Outer") != "1" || r.header.Get("X-Inner") != "1" || strings.Join(order, ",") != "Outer,Inner" {
		t.Errorf("status %d, order %v", r.status, order)
	}
}

func TestInMemoryUnderSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := llmtest.NewUnstartedServer()
		t.Cleanup(srv.Close)
		c := srv.Client()
		for range 3 {
			resp, err := c.Get(srv.URL + llmtest.PathModels)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if got := srv.Requests()[2].Time; !got.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("arrival time %v, want the bubble's clock", got)
		}
	})
}

func TestMaxRecords(t *testing.T) {
	t.Parallel()
	srv := llmtest.NewTestServer(t, llmtest.WithMaxRecords(2))
	for range 5 {
		do(t, srv.Client(), "GET", srv.URL+llmtest.PathModels, "")
	}
	recs := srv.Requests()
	if len(recs) != 2 || recs[0].Seq != 4 || recs[1].Seq != 5 {
		t.Errorf("records %+v, want requests 4 and 5", recs)
	}
}
