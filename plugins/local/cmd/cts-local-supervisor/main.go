// Command cts-local-supervisor is the local launcher's per-container supervisor (see package
// plugins/local/supervisor): the plugin starts one per container, beside its agent. It lives
// beside the plugin binary, cts-launcher-local, and is not meant to be run by hand:
//
//	cts-local-supervisor __cts_supervise <container_dir> <kill_grace> <agent_path> [agent_args...]
//
// It is a binary of its own, without the plugin machinery, because one starts for every
// container, on the job's critical path.
package main

import (
	"fmt"
	"os"

	"github.com/kbase/cts/plugins/local/supervisor"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != supervisor.Command {
		fmt.Fprintf(os.Stderr, "cts-local-supervisor is started by the local launcher (cts-launcher-local), not by hand: its first argument must be %s\n", supervisor.Command)
		os.Exit(2)
	}
	os.Exit(supervisor.Supervise(os.Args[2:]))
}
