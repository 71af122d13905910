package jobs_test

import (
	"os"
	"testing"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/jobs/jobstest"
)

func TestMain(m *testing.M) {
	devstack.Main()
	os.Exit(m.Run())
}

// Short names for the lifecycle fixture.
var (
	newFixture = jobstest.New
	discard    = jobstest.Discard

	alice = jobstest.Alice
)
