package meshlint

import (
	"errors"
	"fmt"
	"io"
	"strings"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/infermesh/infermesh/llmclient"
)

// ReadApp reads the application's policy from YAML or JSON in the schema of
// [llmclient.Description] (what [llmclient.Transport.Describe] exports). Unknown fields
// are errors, so a misspelt field is not silently ignored. file names the input in
// errors; the error is a [*ParseError].
func ReadApp(file string, r io.Reader) (llmclient.Description, error) {
	var d llmclient.Description
	b, err := readAll(file, r)
	if err != nil {
		return d, err
	}
	if err := sigsyaml.UnmarshalStrict(b, &d); err != nil {
		return llmclient.Description{}, yamlError(file, err)
	}
	if err := validateApp(d); err != nil {
		return llmclient.Description{}, &ParseError{File: file, Err: err}
	}
	return d, nil
}

// validateApp checks what the rules rely on; the error names the field.
func validateApp(d llmclient.Description) error {
	if len(d.Routes) == 0 {
		return errors.New("routes: at least one route is needed")
	}
	var errs []error
	seen := map[string]bool{}
	for i, r := range d.Routes {
		switch {
		case r.Prefix != "" && !strings.HasPrefix(r.Prefix, "/"):
			errs = append(errs, fmt.Errorf("routes[%d].prefix %q does not start with /", i, r.Prefix))
		case seen[r.Prefix]:
			errs = append(errs, fmt.Errorf("routes[%d].prefix %q is listed twice", i, r.Prefix))
		}
		seen[r.Prefix] = true
		if r.Attempts < 1 {
			errs = append(errs, fmt.Errorf("routes[%d].attempts is %d; it counts the first attempt, so it is at least 1", i, r.Attempts))
		}
		for _, dur := range []struct {
			name string
			v    llmclient.Duration
		}{
			{"timeout", r.Timeout}, {"perTryTimeout", r.PerTryTimeout}, {"stream.firstTokenTimeout", r.Stream.FirstTokenTimeout},
			{"stream.idleTimeout", r.Stream.IdleTimeout}, {"stream.maxDuration", r.Stream.MaxDuration},
		} {
			if dur.v < 0 {
				errs = append(errs, fmt.Errorf("routes[%d].%s %s is negative", i, dur.name, dur.v))
			}
		}
	}
	if d.SDKRetries < 0 {
		errs = append(errs, fmt.Errorf("sdkRetries %d is negative", d.SDKRetries))
	}
	if d.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d is negative", d.Concurrency))
	}
	return errors.Join(errs...)
}

// appRoute returns the route the application takes for path: the longest matching
// prefix, else the default route (empty prefix).
func appRoute(d *llmclient.Description, path string) (llmclient.RouteDescription, bool) {
	best, found := llmclient.RouteDescription{}, false
	for _, r := range d.Routes {
		if strings.HasPrefix(path, r.Prefix) && (!found || len(r.Prefix) > len(best.Prefix)) {
			best, found = r, true
		}
	}
	return best, found
}
