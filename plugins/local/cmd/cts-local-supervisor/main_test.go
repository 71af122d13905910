package main

import (
	"testing"

	"github.com/kbase/cts/test/linkdeps"
)

// TestSupervisorLinksNoPluginMachinery: a supervisor starts for every container, before its
// agent, so what the binary links is start-up time on every job. The plugin binary it
// replaces (19.5 MB with go-plugin and gRPC) took 42–61 ms from exec to exit at load 8, where
// this one (3.7 MB) takes 12–15 ms.
func TestSupervisorLinksNoPluginMachinery(t *testing.T) {
	linkdeps.Forbid(t, "cts-local-supervisor", append(linkdeps.PluginMachinery, "github.com/kbase/cts/plugins/local"),
		[]string{"github.com/kbase/cts/plugins/local/supervisor", "github.com/kbase/cts/plugins/local/cmd/cts-local-supervisor"})
}
