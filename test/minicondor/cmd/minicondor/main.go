// Command minicondor is the mini-condor simulator (see package test/minicondor): installed
// under the names condor_submit, condor_q, condor_history and condor_rm, it plays each tool,
// keeping its state in $MINICONDOR_DIR. It is a test tool.
package main

import (
	"os"

	"github.com/kbase/cts/test/minicondor"
)

func main() {
	os.Exit(minicondor.Main(os.Args, os.Stdout, os.Stderr))
}
