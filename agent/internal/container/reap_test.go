package container

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kbase/cts/test/imagebuild"
)

// startBackground runs s in the background and waits until the runtime knows the container
// and its program runs (it printed "sleeping"). The returned channel gets Run's error.
func startBackground(t *testing.T, f *fixture, s Spec) <-chan error {
	t.Helper()
	started := make(chan struct{})
	var out syncBuffer
	once := false
	out.notify = func(b string) {
		if !once && strings.Contains(b, "sleeping") {
			once = true
			close(started)
		}
	}
	s.Stdout = &out
	done := make(chan error, 1)
	go func() {
		_, err := f.rt.Run(context.Background(), s)
		if w, ok := f.rt.(Waiter); ok {
			w.Wait()
		}
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the container never started")
	}
	return done
}

// TestRemove: an agent restarted for the same attempt removes that attempt's container first,
// whoever runs it; a missing container is no error.
func TestRemove(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		s := f.spec("sleep-ignore-term", "600")
		done := startBackground(t, f, s)
		if !f.rt.Known(ctx, s.ID) {
			t.Fatal("a running container is not known")
		}
		if err := f.rt.Remove(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done: // the run ends with its container, whatever it says
		case <-time.After(time.Minute):
			t.Fatal("the run outlived its removed container")
		}
		if f.rt.Known(ctx, s.ID) {
			t.Error("the removed container is still known")
		}
		if err := f.rt.Remove(ctx, s.ID); err != nil {
			t.Errorf("removing a missing container: %v", err)
		}
	})
}

// TestDockerReapZombieOwner: a container whose owner agent exited but is not reaped yet (a
// zombie: what an agent restarted after kill -9 finds) counts as left over; listing it
// removes nothing, applying removes it; a live owner's container is never touched.
func TestDockerReapZombieOwner(t *testing.T) {
	t.Parallel()
	f := newDockerFixture(t)
	ctx := context.Background()
	// The owner: a process that exits at once and stays a zombie until we wait for it.
	owner := exec.Command("sleep", "1")
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	ownerLabel := ownerID(owner.Process.Pid)
	dead := &Docker{cfg: f.dock.cfg, hc: f.dock.hc, log: f.dock.log, owner: ownerLabel}
	s := f.spec("sleep", "600")
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _, err := dead.Run(runCtx, s); done <- err }()
	// Wait for the owner to be a zombie and its container to run.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(owner.Process.Pid) + "/stat")
		if strings.Contains(string(st), ") Z ") && f.rt.Known(ctx, s.ID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("owner %q not a zombie with a running container", st)
		}
	}
	live := f.spec("sleep", "600")
	liveDone := startBackground(t, f, live)

	left, err := f.rt.Reap(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range left {
		found = found || l.Kind == "container" && l.ID == s.ID
		if l.ID == live.ID {
			t.Errorf("a live agent's container is listed: %v", l)
		}
	}
	if !found || !f.rt.Known(ctx, s.ID) {
		t.Fatalf("listing: %v; the zombie's container must be listed and still there", left)
	}
	if _, err := f.rt.Reap(ctx, true); err != nil {
		t.Fatal(err)
	}
	if f.rt.Known(ctx, s.ID) {
		t.Error("the zombie owner's container was not reaped")
	}
	if !f.rt.Known(ctx, live.ID) {
		t.Error("the live agent's container was reaped")
	}
	stop()
	<-done
	_ = owner.Wait()
	if err := f.rt.Remove(ctx, live.ID); err != nil {
		t.Fatal(err)
	}
	<-liveDone
}

// TestReapOrphanCgroup: a cgroup under the runtime's parent that no container owns (a runc
// run killed half-way) is removed, the processes in it killed; listing alone touches nothing.
func TestReapOrphanCgroup(t *testing.T) {
	f := newFixture(t)
	old := cgroupMinAge
	cgroupMinAge = 0
	t.Cleanup(func() { cgroupMinAge = old })
	dir := filepath.Join(cgroupRoot, "pids", f.oci.cfg.CgroupParent, "cts-orphan-"+strconv.Itoa(os.Getpid()))
	if _, err := os.Stat(filepath.Join(cgroupRoot, "pids")); err != nil {
		t.Skip("no cgroup v1 pids hierarchy here")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	victim := exec.Command("sleep", "600")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(victim.Process.Pid)), 0o644); err != nil {
		_ = victim.Process.Kill()
		t.Fatal(err)
	}
	left, err := f.rt.Reap(context.Background(), false)
	if err != nil || len(left) != 1 || left[0].Kind != "cgroup" || left[0].ID != dir {
		t.Fatalf("listing: %v %v", left, err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal("listing removed the cgroup")
	}
	if _, err := f.rt.Reap(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("orphan cgroup left: %v", err)
	}
	if err := victim.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the process in the orphan cgroup: %v, want killed", err)
	}
}

// TestRunDiskFull: the node's disk fills up while the image is unpacked (into the cache's
// shared tree, or into the bundle for a private root): the run fails with ErrNoSpace, runs
// nothing, and leaves nothing (no bundle, no half-built tree).
func TestRunDiskFull(t *testing.T) {
	t.Parallel()
	requireRunc(t)
	host := newRegistry(t, nil)
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/bin/testtool", Mode: 0o755, Data: testTool(t)}, {Path: "/data/big", Mode: 0o644, Data: big}},
		[]string{"/bin/testtool"}, []string{"PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	image := push(t, img, host, "big")
	for _, tc := range []struct {
		name    string
		private bool
		small   func(d dirs) string // the directory on a 2 MB file system
	}{
		{"shared tree", false, func(d dirs) string { return filepath.Join(d.cache, treeSubdir) }},
		{"private root", true, func(d dirs) string { return d.bundles }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDirs(t)
			small := tc.small(d)
			if err := os.MkdirAll(small, 0o700); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small).CombinedOutput(); err != nil {
				t.Skipf("cannot mount a small tmpfs here: %v: %s", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("umount", small).Run() })
			rt, err := NewOCI(OCIConfig{Root: d.root, CacheDir: d.cache, BundleDir: d.bundles, Insecure: true, PrivateRootfs: tc.private})
			if err != nil {
				t.Fatal(err)
			}
			if err := rt.Pull(context.Background(), image); err != nil {
				t.Fatal(err)
			}
			f := &fixture{kind: EngineRunc, d: d, rt: rt, oci: rt, image: image}
			_, _, _, err = f.run(t, context.Background(), f.spec("echo", "never"))
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("err %v, want ErrNoSpace", err)
			}
			assertNoContainers(t, rt, d)
			if left, _ := os.ReadDir(filepath.Join(d.cache, treeSubdir)); len(left) != 0 {
				t.Errorf("left in the cache's unpacked images: %v", left)
			}
		})
	}
}
