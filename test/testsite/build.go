// Package testsite starts whole CTS dev sites (coordinator/devmode: the embedded stack, the
// coordinator, a launcher plugin and real agents running real containers under runc) for the
// end-to-end style test packages: test/e2e, test/fault, test/compat and the CLI's site tests.
//
// It owns what those packages used to repeat: building the agent, the launchers and the test
// programs once per test binary (Main, Binary, RequireEnv), starting a site and closing it
// (Start), and the few requests every such test makes (Site's methods). It is a test helper:
// nothing outside tests may import it, and it asserts nothing about the system under test:
// the checks stay in the test packages.
package testsite

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kbase/cts/coordinator/devstack"
)

// The packages of the programs a site runs, relative to the module root.
const (
	AgentPkg      = "./agent/cmd/cts-agent"
	LauncherPkg   = "./plugins/local/cmd/cts-launcher-local"
	SupervisorPkg = "./plugins/local/cmd/cts-local-supervisor" // built beside LauncherPkg's binary
	DemoToolPkg   = "./test/demo/tool"
	TestToolPkg   = "./test/imagebuild/testtool"
	HTCondorPkg   = "./plugins/htcondor/cmd/cts-launcher-htcondor"
	MiniCondorPkg = "./test/minicondor/cmd/minicondor"
)

// builds holds the binaries built so far by this test binary.
var builds struct {
	mu      sync.Mutex
	started bool   // Main was called
	dir     string // made on first use, removed by Main
	done    map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Main runs a test package that starts dev sites; call it as the whole of TestMain (after
// setting any package variables the tests need). It calls devstack.Main first (a dev site's
// S3 runs as a child process of the test binary), runs the tests, removes the binaries built
// for them and exits with the tests' status.
func Main(m *testing.M) {
	devstack.Main()
	builds.mu.Lock()
	builds.started = true
	builds.mu.Unlock()
	code := m.Run()
	builds.mu.Lock()
	if builds.dir != "" {
		if err := os.RemoveAll(builds.dir); err != nil {
			fmt.Fprintln(os.Stderr, "testsite: remove binaries:", err)
		}
	}
	builds.mu.Unlock()
	os.Exit(code)
}

// Binary returns the path of a static (CGO_ENABLED=0) binary built from the main package pkg,
// a path relative to the module root such as "./test/fault/tool". Each package is built once
// per test binary, on first use; a failed build fails every test that asks for it. The
// binary keeps the base name of its package.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	path, err := binary(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func binary(pkg string) (string, error) {
	builds.mu.Lock()
	if !builds.started {
		builds.mu.Unlock()
		return "", errors.New("testsite: TestMain must call testsite.Main")
	}
	if builds.done == nil {
		builds.done = map[string]*build{}
	}
	b := builds.done[pkg]
	if b == nil {
		b = &build{}
		builds.done[pkg] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(pkg) })
	return b.path, b.err
}

// companions are built into the folder of the package they go with, as they are installed.
var companions = map[string][]string{LauncherPkg: {SupervisorPkg}}

// goBuild builds pkg (and its companions) into its own folder of the binaries' folder, so two
// packages with the same base name ("tool") do not collide.
func goBuild(pkg string) (string, error) {
	dir, err := binDir()
	if err != nil {
		return "", err
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	folder := filepath.Join(dir, strings.ReplaceAll(strings.Trim(pkg, "./"), "/", "_"))
	out := filepath.Join(folder, filepath.Base(pkg))
	args := []string{"build", "-trimpath", "-o", out, pkg}
	if c := companions[pkg]; len(c) > 0 {
		args = append([]string{"build", "-trimpath", "-o", folder + "/", pkg}, c...)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // the agent and the tools run on bare nodes and in images
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// binDir makes the folder of this test binary's builds on first use.
func binDir() (string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "cts-testsite-bin-")
		if err != nil {
			return "", fmt.Errorf("binaries folder: %w", err)
		}
		builds.dir = dir
	}
	return builds.dir, nil
}

// moduleRoot is the nearest folder at or above the working directory (a test's package
// folder) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// Binaries are the programs every dev site runs.
type Binaries struct {
	Agent    string // cts-agent
	Launcher string // cts-launcher-local
	DemoTool string // the demo image's entrypoint (test/demo/tool)
}

// RequireEnv skips t, saying why, unless this machine can run containers (root and runc), and
// fails it when the site's binaries do not build. It returns them.
func RequireEnv(t testing.TB) Binaries {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("these tests run real jobs in containers with runc and need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed (scripts/install-deps.sh installs it)")
	}
	return Binaries{Agent: Binary(t, AgentPkg), Launcher: Binary(t, LauncherPkg), DemoTool: Binary(t, DemoToolPkg)}
}

// RequireCrun skips t unless agents can run containers with crun here (RequireEnv's
// conditions and crun installed and able to make cgroups: the agent's container.CrunUsable);
// with CTS_REQUIRE_CRUN=1 (make test) it fails t instead, as CI must run these tests.
func RequireCrun(t testing.TB) {
	t.Helper()
	skip := t.Skip
	if os.Getenv("CTS_REQUIRE_CRUN") == "1" {
		skip = t.Fatal
	}
	if _, err := exec.LookPath("crun"); err != nil {
		skip("crun is not installed (scripts/install-deps.sh installs it)")
	}
	// crun refuses a hybrid cgroup layout whose v2 hierarchy holds controllers.
	if b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil && len(bytes.TrimSpace(b)) > 0 {
		skip(fmt.Sprintf("crun cannot make cgroups here: the cgroup v2 hierarchy of this hybrid layout holds %s (scripts/crun-cgroups.sh moves them to v1)", bytes.TrimSpace(b)))
	}
}

// Script writes an executable file named name, holding content (a "#!/bin/sh" script), into a
// temporary folder of t and returns its path: an agent wrapper for Options.AgentPath.
func Script(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
