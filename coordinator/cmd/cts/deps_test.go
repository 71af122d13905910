package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoEmbeddedStack keeps the dev site's embedded stack (FerretDB, versitygw, kfake, the
// registry server) out of the user CLI: cts-dev carries it.
func TestNoEmbeddedStack(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, banned := range []string{
			"github.com/kbase/cts/coordinator/devstack", "github.com/kbase/cts/coordinator/devmode",
			"github.com/FerretDB/", "github.com/versity/versitygw", "github.com/twmb/franz-go/pkg/kfake",
			"github.com/google/go-containerregistry/pkg/registry",
		} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("cts links %s", d)
			}
		}
	}
	t.Logf("cts links %d packages", len(deps))
}
