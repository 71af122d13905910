package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbase/cts/agent/internal/container"
	"github.com/kbase/cts/test/linkdeps"
)

// clearEnv unsets the agent's environment for the test (t.Setenv restores it).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"JOB_ID", "CONTAINER_NUMBER", "SERVICE_ROOT_URL", "TOKEN_PATH", "S3_URL",
		"S3_ACCESS_KEY", "S3_SECRET_PATH", "CTS_AGENT_NETWORK", "MOUNT_PREFIX_OVERRIDE", "CTS_AGENT_ATTEMPT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestRunBadEnvironment(t *testing.T) {
	clearEnv(t)
	cases := []struct {
		name    string
		argv    []string
		want    []string
		notWant []string
	}{
		{"nothing set", []string{"run"}, []string{"configuration:", "CONTAINER_NUMBER", "JOB_ID is required",
			"SERVICE_ROOT_URL is required", "TOKEN_PATH is required", "S3_URL is required", "S3_ACCESS_KEY is required",
			"S3_SECRET_PATH is required"}, nil},
		{"flags stand in for JOB_ID and CONTAINER_NUMBER", []string{"run", "--job", "j1", "--container", "4"},
			[]string{"SERVICE_ROOT_URL is required"}, []string{"JOB_ID", "CONTAINER_NUMBER"}},
		{"without the run word", []string{"--job", "j1"}, []string{"CONTAINER_NUMBER"}, []string{"JOB_ID"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, err := run(tc.argv)
			if code != 2 || err == nil {
				t.Fatalf("run = %d, %v; want 2 and an error", code, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q mentions %q", err, w)
				}
			}
		})
	}
}

func TestRunFlags(t *testing.T) {
	clearEnv(t)
	// Silence the flag package's usage output and the version line.
	for _, f := range []**os.File{&os.Stdout, &os.Stderr} {
		old := *f
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		*f = null
		t.Cleanup(func() { *f = old; null.Close() })
	}
	cases := []struct {
		argv []string
		code int
	}{
		{[]string{"--version"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"run", "--no-such-flag"}, 2},
		{[]string{"--container", "x"}, 2},
	}
	for _, tc := range cases {
		code, err := run(tc.argv)
		if code != tc.code || (code == 0) != (err == nil) {
			t.Errorf("run(%q) = %d, %v; want %d", tc.argv, code, err, tc.code)
		}
	}
}

// TestUsage: -h lists every mode with an example.
func TestUsage(t *testing.T) {
	for _, mode := range []string{"cts-agent [run]", "cts-agent check", "cts-agent reap [--yes]", "CTS_AGENT_MODE=refdata cts-agent", "cts-agent version"} {
		if !strings.Contains(usage, "\n  "+mode) {
			t.Errorf("usage lacks the mode %q", mode)
		}
	}
	if n := strings.Count(usage, "e.g.  cts-agent "); n < 3 {
		t.Errorf("usage has %d examples", n)
	}
	code, err := run([]string{"frobnicate"})
	if code != 2 || err == nil || !strings.Contains(err.Error(), `unknown mode "frobnicate"`) {
		t.Errorf("unknown mode: %d %v", code, err)
	}
}

// TestReapModeOnACleanNode: reap lists nothing on a node no agent used, and says so, with
// either engine of the oci runtime.
func TestReapModeOnACleanNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runc and crun need root")
	}
	for _, engine := range []string{container.EngineRunc, container.EngineCrun} {
		t.Run(engine, func(t *testing.T) {
			if _, err := exec.LookPath(engine); err != nil {
				t.Skipf("%s not installed", engine)
			}
			if engine == container.EngineCrun && container.CrunUsable() != nil {
				t.Skip(container.CrunUsable())
			}
			dir := t.TempDir()
			t.Setenv("CTS_AGENT_RUNTIME", engine)
			t.Setenv("CTS_AGENT_RUNC_ROOT", filepath.Join(dir, "runc"))
			t.Setenv("CTS_AGENT_NODE_DIR", filepath.Join(dir, "node"))
			t.Setenv("CTS_AGENT_CACHE_DIR", filepath.Join(dir, "cache"))
			var out strings.Builder
			code, err := runReap(nil, &out)
			if code != 0 || err != nil || !strings.Contains(out.String(), "nothing left by dead agents on this node") ||
				!strings.Contains(out.String(), "runtimes: oci ("+engine+", root "+filepath.Join(dir, "runc")+")") {
				t.Errorf("reap = %d %v:\n%s", code, err, out.String())
			}
		})
	}
}

// TestModesOtherThanRunIgnoreTheStagingMode: with CTS_AGENT_MODE=refdata (a staging task's
// environment), `cts-agent reap` reaps and `cts-agent version` prints the version; only the
// run mode stages. The local launcher reaps after a killed staging task with the task's own
// environment: the reap used to run the staging again, unsupervised, in its place.
func TestModesOtherThanRunIgnoreTheStagingMode(t *testing.T) {
	t.Setenv("CTS_AGENT_MODE", "refdata")
	if code, err := run([]string{"version"}); code != 0 || err != nil {
		t.Errorf("version with CTS_AGENT_MODE=refdata = %d, %v; want 0", code, err)
	}
	// The run mode stages: without the staging's variables it says which is missing.
	if code, err := run(nil); code == 0 || err == nil || !strings.Contains(err.Error(), "REFDATA") {
		t.Errorf("run with CTS_AGENT_MODE=refdata and no staging variables = %d, %v; want the staging's configuration error", code, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("reap with runc needs root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed")
	}
	dir := t.TempDir()
	t.Setenv("CTS_AGENT_RUNTIME", "oci")
	t.Setenv("CTS_AGENT_RUNC_ROOT", filepath.Join(dir, "runc"))
	t.Setenv("CTS_AGENT_NODE_DIR", filepath.Join(dir, "node"))
	t.Setenv("CTS_AGENT_CACHE_DIR", filepath.Join(dir, "cache"))
	if code, err := run([]string{"reap", "--yes"}); code != 0 || err != nil {
		t.Errorf("reap --yes with CTS_AGENT_MODE=refdata = %d, %v; want 0 (a clean node)", code, err)
	}
}

// TestAgentLinksNoPluginMachinery: every job starts an agent process, so what the binary
// links is start-up time. The launcher plugin machinery (go-plugin, gRPC, protobuf, net/rpc)
// doubled the binary (30.6 → 16.2 MB) and its initialisers took about half of the time to
// main; the agent needs only the launcher's environment names (shared/launcher/env).
func TestAgentLinksNoPluginMachinery(t *testing.T) {
	linkdeps.Forbid(t, "cts-agent", linkdeps.PluginMachinery, []string{"github.com/kbase/cts/shared/launcher/env"})
}
