package devstack_test

import (
	"os"
	"testing"

	"github.com/kbase/cts/coordinator/devstack"
)

func TestMain(m *testing.M) {
	devstack.Main()
	os.Exit(m.Run())
}
