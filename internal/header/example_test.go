package header_test

import (
	"fmt"
	"net/http"

	"github.com/infermesh/infermesh/internal/header"
)

func ExampleGet() {
	h := http.Header{}
	h.Set("x-envoy-upstream-service-time", "42") // Set stores it under the canonical key
	fmt.Println(header.Get(h, "X-Envoy-Upstream-Service-Time"))
	// Output: 42
}
