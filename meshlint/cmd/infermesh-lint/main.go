// Command infermesh-lint checks an application's resilience policy (infermesh's routes,
// retries and stream deadlines) against the mesh's: Istio VirtualServices,
// DestinationRules and ServiceEntries, or a sidecar's live configuration.
//
// Usage:
//
//	infermesh-lint [flags] [file.yaml ...]
//	kubectl get vs,dr,se -A -o yaml | infermesh-lint -app policy.json
//	infermesh-lint -envoy-admin http://127.0.0.1:15000
//
// With no file, or "-", it reads standard input. The application's side is infermesh's
// defaults unless -app names a policy file (the JSON that llmclient's Transport.Describe
// writes, or the same in YAML). It exits 1 when a finding is an error, 2 when an input
// cannot be read, and 0 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/infermesh/infermesh/llmclient"
	"github.com/infermesh/infermesh/meshlint"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// hostList is a repeatable, comma-separated flag.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*h = append(*h, s)
		}
	}
	return nil
}

type config struct {
	app, format, admin string
	files              []string
	opts               meshlint.Options
	timeout            time.Duration
	// overrides of the app's description, applied when the flag is given
	sdkRetries, concurrency int
	affinity                string
	set                     map[string]bool
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{set: map[string]bool{}}
	fs := flag.NewFlagSet("infermesh-lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: infermesh-lint [flags] [file.yaml ... | -]\n\n"+
			"Checks the app's resilience policy against Istio resources (files, or standard input)\n"+
			"or a sidecar's live configuration (-envoy-admin). Exit status: 1 when a finding is an\n"+
			"error, 2 when an input cannot be read, 0 otherwise.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.app, "app", "", "the app's policy, YAML or JSON in llmclient.Description's schema (default: infermesh's defaults)")
	fs.StringVar(&c.format, "format", "text", "output: text, json or sarif")
	fs.StringVar(&c.admin, "envoy-admin", "", "check a sidecar's live config_dump at this admin URL, e.g. http://127.0.0.1:15000, instead of files")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long -envoy-admin may take")
	var hosts hostList
	fs.Var(&hosts, "llm-host", "a host that serves LLM or inference calls, beyond those found (repeatable, comma-separated, *.domain allowed)")
	fs.BoolVar(&c.opts.AttemptCountInResponse, "attempt-count-in-response", false,
		"the sidecar reports x-envoy-attempt-count in responses (an EnvoyFilter not among the inputs sets include_attempt_count_in_response)")
	fs.IntVar(&c.sdkRetries, "sdk-retries", 0, "the caller SDK's own retries, e.g. 2 for openai-go (overrides the app's sdkRetries)")
	fs.IntVar(&c.concurrency, "concurrency", 0, "the app's peak calls in flight (overrides the app's concurrency)")
	fs.StringVar(&c.affinity, "affinity-header", "", "the session header the app sends (overrides the app's affinityHeader)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	c.opts.LLMHosts = hosts
	c.files = fs.Args()
	switch {
	case c.format != "text" && c.format != "json" && c.format != "sarif":
		return nil, fmt.Errorf("-format %q: want text, json or sarif", c.format)
	case c.admin != "" && len(c.files) > 0:
		return nil, errors.New("-envoy-admin reads the live configuration; it takes no files")
	case c.sdkRetries < 0 || c.concurrency < 0:
		return nil, errors.New("-sdk-retries and -concurrency must not be negative")
	case c.timeout <= 0:
		return nil, fmt.Errorf("-timeout %v must be positive", c.timeout)
	}
	if len(c.files) == 0 && c.admin == "" {
		c.files = []string{"-"}
	}
	return c, nil
}

// run is the command, with its standard streams as arguments; it returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "infermesh-lint:", err)
		return 2
	}
	if err := c.readApp(stdin); err != nil {
		fmt.Fprintln(stderr, "infermesh-lint:", err)
		return 2
	}
	findings, err := c.check(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "infermesh-lint:", err)
		return 2
	}
	switch c.format {
	case "json":
		err = meshlint.WriteJSON(stdout, findings)
	case "sarif":
		err = meshlint.WriteSARIF(stdout, findings)
	default:
		err = meshlint.WriteText(stdout, findings)
	}
	if err != nil {
		fmt.Fprintln(stderr, "infermesh-lint:", err)
		return 2
	}
	if meshlint.HasErrors(findings) {
		return 1
	}
	return 0
}

// readApp reads -app and applies the flags that override it.
func (c *config) readApp(stdin io.Reader) error {
	d := llmclient.DefaultDescription()
	if c.app != "" {
		r, name, closeFn, err := open(c.app, stdin)
		if err != nil {
			return err
		}
		d, err = meshlint.ReadApp(name, r)
		closeFn()
		if err != nil {
			return err
		}
		c.opts.AppFile = name
	}
	if c.set["sdk-retries"] {
		d.SDKRetries = c.sdkRetries
	}
	if c.set["concurrency"] {
		d.Concurrency = c.concurrency
	}
	if c.set["affinity-header"] {
		d.AffinityHeader = c.affinity
	}
	c.opts.App = &d
	if c.app == "" {
		c.opts.AppName = "defaults"
	}
	return nil
}

func (c *config) check(stdin io.Reader) ([]meshlint.Finding, error) {
	if c.admin != "" {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		m, err := meshlint.ReadEnvoy(ctx, c.admin, nil)
		if err != nil {
			return nil, err
		}
		return meshlint.Check(m, c.opts)
	}
	var m meshlint.Mesh
	for _, f := range c.files {
		r, name, closeFn, err := open(f, stdin)
		if err != nil {
			return nil, err
		}
		err = m.ReadYAML(name, r)
		closeFn()
		if err != nil {
			return nil, err
		}
	}
	return meshlint.Check(&m, c.opts)
}

// open opens a named file, or standard input for "-".
func open(name string, stdin io.Reader) (io.Reader, string, func(), error) {
	if name == "-" {
		return stdin, "stdin", func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, name, nil, err
	}
	return f, name, func() { f.Close() }, nil
}
