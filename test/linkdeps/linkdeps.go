// Package linkdeps checks what a command links, for the binaries whose start-up time is on a
// job's critical path (the agent, the local launcher's supervisor): every package linked is
// initialised at each start.
package linkdeps

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// PluginMachinery is what the launcher plugins link and the per-job binaries must not: go-plugin,
// gRPC, protobuf, net/rpc, and shared/launcher, which brings them.
var PluginMachinery = []string{"google.golang.org/grpc", "google.golang.org/protobuf", "github.com/hashicorp/go-plugin",
	"net/rpc", "github.com/kbase/cts/shared/launcher"}

// Forbid fails t for every package that the package in the test's working directory links
// (go list -deps) and that is one of banned or below one, unless allowed lists it.
func Forbid(t *testing.T, name string, banned, allowed []string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, b := range banned {
			if (dep == b || strings.HasPrefix(dep, b+"/")) && !slices.Contains(allowed, dep) {
				t.Errorf("%s links %s", name, dep)
			}
		}
	}
}
