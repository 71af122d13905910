package node

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain doubles as a dead agent: with NODE_TEST_REGISTER set, the process registers the
// work dir it names and exits without releasing, as a killed agent would.
func TestMain(m *testing.M) {
	if wd := os.Getenv("NODE_TEST_REGISTER"); wd != "" {
		r, err := Open(os.Getenv("NODE_TEST_DIR"))
		if err == nil {
			_, err = r.Register(Registration{Attempt: "dead-1", WorkDir: wd, OwnWorkDir: os.Getenv("NODE_TEST_OWN") == "1", PID: os.Getpid(), Started: time.Now()})
		}
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// deadAgent registers wd in nodeDir from a process that then exits.
func deadAgent(t *testing.T, nodeDir, wd string, own bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NODE_TEST_REGISTER="+wd, "NODE_TEST_DIR="+nodeDir)
	if own {
		cmd.Env = append(cmd.Env, "NODE_TEST_OWN=1")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dead agent: %v: %s", err, out)
	}
}

func touch(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestReapDeadAgents(t *testing.T) {
	nodeDir := t.TempDir()
	r, err := Open(nodeDir)
	if err != nil {
		t.Fatal(err)
	}
	// A launcher's work dir: the launcher's own files stay, the agent's data goes.
	launched := t.TempDir()
	touch(t, filepath.Join(launched, "input", "a.fna"), filepath.Join(launched, "output", "o.txt"),
		filepath.Join(launched, "bundles", "cts-x-0-aa", "rootfs", "bin", "tool"),
		filepath.Join(launched, "bundles", "cts-busy-0-bb", "config.json"),
		filepath.Join(launched, "container-0-stdout.txt"), filepath.Join(launched, "agent.err"),
		filepath.Join(launched, "events-a.journal"))
	deadAgent(t, nodeDir, launched, false)
	// A hand run's own ./cts-work: all of it goes.
	hand := filepath.Join(t.TempDir(), "cts-work")
	touch(t, filepath.Join(hand, "input", "b"), filepath.Join(hand, "events-b.journal"))
	deadAgent(t, nodeDir, hand, true)
	// A live agent (this process): nothing of it is touched.
	live := t.TempDir()
	touch(t, filepath.Join(live, "input", "c"))
	release, err := r.Register(Registration{Attempt: "live", WorkDir: live, PID: os.Getpid(), Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	inUse := func(id string) bool { return id == "cts-busy-0-bb" }
	listed, err := r.Reap(false, inUse)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, l := range listed {
		if l.Kind == "work data" {
			paths = append(paths, l.Path)
		}
		if strings.Contains(l.Path, live) {
			t.Errorf("a live agent's %s listed", l.Path)
		}
	}
	slices.Sort(paths)
	want := []string{
		filepath.Join(launched, "bundles", "cts-x-0-aa"), filepath.Join(launched, "container-0-stdout.txt"),
		filepath.Join(launched, "input"), filepath.Join(launched, "output"), hand,
	}
	slices.Sort(want)
	if !slices.Equal(paths, want) {
		t.Errorf("listed %v\nwant %v", paths, want)
	}
	if !exists(filepath.Join(launched, "input", "a.fna")) || !exists(hand) {
		t.Fatal("a listing removed something")
	}

	if _, err := r.Reap(true, inUse); err != nil {
		t.Fatal(err)
	}
	for _, p := range want {
		if exists(p) {
			t.Errorf("%s left", p)
		}
	}
	for _, p := range []string{filepath.Join(launched, "agent.err"), filepath.Join(launched, "events-a.journal"),
		filepath.Join(launched, "bundles", "cts-busy-0-bb", "config.json"), filepath.Join(live, "input", "c")} {
		if !exists(p) {
			t.Errorf("%s removed", p)
		}
	}
	left, err := r.Reap(false, inUse)
	if err != nil || len(left) != 0 {
		t.Errorf("after the reap: %v %v", left, err)
	}
}

func TestCleanWorkDir(t *testing.T) {
	wd := t.TempDir()
	touch(t, filepath.Join(wd, "input", "a"), filepath.Join(wd, "output", "b"), filepath.Join(wd, "container-1-stderr.txt"),
		filepath.Join(wd, "agent.out"))
	if err := CleanWorkDir(wd, false); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(wd)
	if len(entries) != 1 || entries[0].Name() != "agent.out" {
		t.Errorf("left %v", entries)
	}
	if err := CleanWorkDir(wd, true); err != nil || exists(wd) {
		t.Errorf("own work dir: %v", err)
	}
	if err := CleanWorkDir("/", true); err == nil {
		t.Error("cleaned /")
	}
}

// TestReapDetachesMounts: a dead agent's bundle may hold its container's root still mounted
// (the agent died before the runtime took it over): the reap unmounts it instead of removing
// files through it, and removes the bundle.
func TestReapDetachesMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	nodeDir := t.TempDir()
	r, err := Open(nodeDir)
	if err != nil {
		t.Fatal(err)
	}
	wd := t.TempDir()
	rootfs := filepath.Join(wd, "bundles", "cts-x-0-aa", "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	// What the mount shows must survive: it belongs to another file system.
	other := t.TempDir()
	touch(t, filepath.Join(other, "keep"))
	if out, err := exec.Command("mount", "--bind", other, rootfs).CombinedOutput(); err != nil {
		t.Skipf("cannot bind-mount here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", rootfs).Run() })
	deadAgent(t, nodeDir, wd, false)
	if _, err := r.Reap(true, nil); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(wd, "bundles")) {
		t.Error("the bundles are still there")
	}
	if !exists(filepath.Join(other, "keep")) {
		t.Error("the reap removed files through the mount")
	}
	if m, err := mountsBelow(wd); err != nil || len(m) != 0 {
		t.Errorf("mounts left: %v %v", m, err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`/a/b`: "/a/b", `/a\040b`: "/a b", `/x\134y`: `/x\y`, `/t\01`: `/t\01`} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
