package launch_test

import (
	"os"
	"testing"

	"github.com/kbase/cts/coordinator/devstack"
	"github.com/kbase/cts/coordinator/internal/jobs/jobstest"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envTestPlugin); dir != "" {
		servePlugin(dir) // the test binary as a launcher plugin process (plugins_test.go)
		os.Exit(0)
	}
	devstack.Main()
	os.Exit(m.Run())
}

// Short names for the lifecycle fixture.
var (
	newFixture = jobstest.New
	input      = jobstest.Input
	wantCTSErr = jobstest.WantCTSErr
	once       = jobstest.Once
	discard    = jobstest.Discard
	errOutage  = jobstest.ErrOutage
	running    = jobstest.Running

	alice, bob, admin = jobstest.Alice, jobstest.Bob, jobstest.Admin
)

const (
	logDir       = jobstest.LogDir
	toolDigest   = jobstest.ToolDigest
	refimgDigest = jobstest.RefimgDigest
)
