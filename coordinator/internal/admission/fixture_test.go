package admission_test

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
	input      = jobstest.Input
	wantCTSErr = jobstest.WantCTSErr
	discard    = jobstest.Discard

	alice, bob, admin = jobstest.Alice, jobstest.Bob, jobstest.Admin
	inputA, inputB    = jobstest.InputA, jobstest.InputB
)

const (
	logDir       = jobstest.LogDir
	toolDigest   = jobstest.ToolDigest
	refimgDigest = jobstest.RefimgDigest
)
