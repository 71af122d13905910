package ingest_test

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
type fixture = jobstest.Fixture

var (
	newFixture = jobstest.New
	wantCTSErr = jobstest.WantCTSErr
	once       = jobstest.Once
	errOutage  = jobstest.ErrOutage
	running    = jobstest.Running

	alice          = jobstest.Alice
	inputA, inputB = jobstest.InputA, jobstest.InputB
)

const (
	logDir       = jobstest.LogDir
	toolDigest   = jobstest.ToolDigest
	refimgDigest = jobstest.RefimgDigest
)
