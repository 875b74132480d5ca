package llmclient_test

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infermesh/infermesh/breaker"
	"github.com/infermesh/infermesh/llmclient"
)

func TestDescribeCustomRoute(t *testing.T) {
	tr, err := llmclient.NewTransport(llmclient.Config{Routes: []llmclient.Route{{
		Name:   "rerank",
		Prefix: "/v1/rerank",
		Policy: breaker.Config{Timeout: 20 * time.Second, PerTryTimeout: 5 * time.Second, MaxAttempts: 4},
		Stream: llmclient.StreamPolicy{IdleTimeout: 10 * time.Second, MaxStreamDuration: 2 * time.Minute},
	}, {
		Prefix: "/v1/embeddings",
		Policy: breaker.Config{Timeout: breaker.NoTimeout, PerTryTimeout: breaker.NoTimeout, MaxAttempts: 1},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	d := tr.Describe()
	byPrefix := map[string]llmclient.RouteDescription{}
	for i, r := range d.Routes {
		byPrefix[r.Prefix] = r
		if i > 0 && len(r.Prefix) > len(d.Routes[i-1].Prefix) {
			t.Errorf("routes not longest prefix first: %q after %q", r.Prefix, d.Routes[i-1].Prefix)
		}
	}
	want := map[string]llmclient.RouteDescription{
		"/v1/rerank": {Name: "rerank", Prefix: "/v1/rerank", Timeout: llmclient.Duration(20 * time.Second),
			PerTryTimeout: llmclient.Duration(5 * time.Second), Attempts: 4,
			Stream: llmclient.StreamDescription{FirstTokenTimeout: llmclient.Duration(5 * time.Second),
				IdleTimeout: llmclient.Duration(10 * time.Second), MaxDuration: llmclient.Duration(2 * time.Minute)}},
		// NoTimeout is "no limit", written 0s; the replaced default keeps its place.
		"/v1/embeddings": {Name: "embeddings", Prefix: "/v1/embeddings", Attempts: 1,
			Stream: llmclient.StreamDescription{FirstTokenTimeout: llmclient.Duration(150 * time.Second),
				IdleTimeout: llmclient.Duration(60 * time.Second)}},
		"": {Name: "default", Prefix: "", Timeout: llmclient.Duration(breaker.DefaultTimeout), Attempts: breaker.DefaultMaxAttempts,
			Stream: llmclient.StreamDescription{FirstTokenTimeout: llmclient.Duration(150 * time.Second),
				IdleTimeout: llmclient.Duration(60 * time.Second)}},
	}
	for prefix, w := range want {
		if got := byPrefix[prefix]; got != w {
			t.Errorf("route %q:\n got %+v\nwant %+v", prefix, got, w)
		}
	}
	if len(d.Routes) != 6 {
		t.Errorf("%d routes, want the 5 defaults and rerank: %+v", len(d.Routes), d.Routes)
	}
}

func TestDefaultDescription(t *testing.T) {
	d := llmclient.DefaultDescription()
	tr, err := llmclient.NewTransport(llmclient.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Describe(); !reflect.DeepEqual(got, d) {
		t.Fatalf("DefaultDescription differs from a zero Config's transport:\n%+v\n%+v", d, got)
	}
	var prefixes []string
	for _, r := range d.Routes {
		prefixes = append(prefixes, r.Prefix)
	}
	if got := strings.Join(prefixes, ","); got != "/v1/chat/completions,/v1/completions,/v1/embeddings,/v1/responses," {
		t.Errorf("prefixes %s", got)
	}
	chat := d.Routes[0]
	if chat.Timeout != llmclient.Duration(300*time.Second) || chat.PerTryTimeout != llmclient.Duration(150*time.Second) ||
		chat.Attempts != 2 || chat.Stream.FirstTokenTimeout != llmclient.Duration(150*time.Second) ||
		chat.Stream.IdleTimeout != llmclient.Duration(60*time.Second) || chat.Stream.MaxDuration != 0 {
		t.Errorf("chat route %+v", chat)
	}
}

// The schema is the contract with infermesh-lint: the exact JSON of one route, and a
// round trip of the whole description.
func TestDescriptionJSON(t *testing.T) {
	d := llmclient.DefaultDescription()
	d.SDKRetries, d.Concurrency, d.AffinityHeader = 2, 64, "x-session-id"
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	const chat = `{"name":"chat","prefix":"/v1/chat/completions","timeout":"300s","perTryTimeout":"150s","attempts":2,` +
		`"hedging":false,"stream":{"firstTokenTimeout":"150s","idleTimeout":"60s","maxDuration":"0s"}}`
	if !strings.HasPrefix(string(b), `{"routes":[`+chat+`,`) ||
		!strings.HasSuffix(string(b), `],"sdkRetries":2,"concurrency":64,"affinityHeader":"x-session-id"}`) {
		t.Errorf("JSON does not follow the schema:\n%s", b)
	}
	var back llmclient.Description
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Errorf("round trip changed the description:\n%+v\n%+v", back, d)
	}
}

func TestDurationJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: `"300s"`, want: 300 * time.Second},
		{in: `"5m"`, want: 5 * time.Minute},
		{in: `"1m30s"`, want: 90 * time.Second},
		{in: `"0.25s"`, want: 250 * time.Millisecond},
		{in: `"0s"`, want: 0},
		{in: `"-1s"`, err: `duration "-1s" is negative`},
		{in: `"300"`, err: `duration "300": time: missing unit in duration "300"`},
		{in: `300`, err: `duration must be a string such as "300s", not 300`},
	} {
		var d llmclient.Duration
		err := json.Unmarshal([]byte(tc.in), &d)
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || time.Duration(d) != tc.want):
			t.Errorf("%s: %v, %v; want %v", tc.in, time.Duration(d), err, tc.want)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0s", 300 * time.Second: "300s", 1500 * time.Millisecond: "1.5s", time.Nanosecond: "0.000000001s",
		-2 * time.Second: "-2s", time.Duration(-1 << 63): "-9223372036.854775808s",
	} {
		if got := llmclient.Duration(d).String(); got != want {
			t.Errorf("%v: %s, want %s", d, got, want)
		}
	}
}

// FuzzDuration checks that every accepted duration string survives a round trip, and
// that every non-negative duration marshals to a string that reads back exactly.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{"300s", "5m", "1m30s", "0.25s", "1h", "0", "-1s", "9223372036.854775807s", "1e3s"} {
		f.Add(s, int64(len(s))*int64(time.Second))
	}
	f.Fuzz(func(t *testing.T, s string, n int64) {
		var d llmclient.Duration
		if err := json.Unmarshal([]byte(strconv.Quote(s)), &d); err == nil {
			want, perr := time.ParseDuration(s)
			if perr != nil || time.Duration(d) != want || d < 0 {
				t.Fatalf("%q read as %v; ParseDuration: %v, %v", s, time.Duration(d), want, perr)
			}
		}
		if n < 0 {
			n = -(n + 1)
		}
		b, err := json.Marshal(llmclient.Duration(n))
		if err != nil {
			t.Fatal(err)
		}
		var back llmclient.Duration
		if err := json.Unmarshal(b, &back); err != nil || int64(back) != n {
			t.Fatalf("%d marshals to %s, reads back as %d (%v)", n, b, back, err)
		}
	})
}

// A service exports the policy it runs, for infermesh-lint -app.
func ExampleTransport_Describe() {
	tr, err := llmclient.NewTransport(llmclient.Config{})
	if err != nil {
		panic(err)
	}
	d := tr.Describe()
	d.SDKRetries = 2 // openai-go's own retries, which the transport cannot see
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d.Routes[0]); err != nil {
		panic(err)
	}
	fmt.Println("sdkRetries:", d.SDKRetries)
	// Output:
	// {
	//   "name": "chat",
	//   "prefix": "/v1/chat/completions",
	//   "timeout": "300s",
	//   "perTryTimeout": "150s",
	//   "attempts": 2,
	//   "hedging": false,
	//   "stream": {
	//     "firstTokenTimeout": "150s",
	//     "idleTimeout": "60s",
	//     "maxDuration": "0s"
	//   }
	// }
	// sdkRetries: 2
}
