package quota_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/infermesh/infermesh/internal/redistest"
)

func TestMain(m *testing.M) {
	redistest.QuietLogs()
	goleak.VerifyTestMain(m)
}
