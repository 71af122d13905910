package container

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kbase/cts/test/imagebuild"
)

func TestRunOutcomes(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		tricky := []string{"a b", `"double" 'single'`, "ünïcødé ✓ 日本", "$HOME", "${PATH}", "`id`", "; rm -rf /", "back\\slash", "*", ""}
		cases := []struct {
			name       string
			args       []string
			wantExit   int
			wantStdout string
			wantStderr string
		}{
			{"arguments reach the program exactly, no shell", append([]string{"echo"}, tricky...), 0, strings.Join(tricky, "\n") + "\n", ""},
			{"stderr is separate from stdout", []string{"stderr", "to", "stderr"}, 0, "", "to stderr\n"},
			{"exit code", []string{"exit", "3"}, 3, "", ""},
			{"no capabilities and no new privileges", []string{"caps"}, 0, "CapEff:\t0000000000000000\nNoNewPrivs:\t1\n", ""},
			{"root file system is read-only", []string{"write", "/x"}, 1, "error: open /x: read-only file system\n", ""},
			{"tmp is writable", []string{"write", "/tmp/x"}, 0, "ok\n", ""},
			{"no network but loopback", []string{"ifaces"}, 0, "lo\n", ""},
			{"runs as root of the container by default", []string{"id"}, 0, "uid=0 gid=0\n", ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				res, stdout, stderr, err := f.run(t, context.Background(), f.spec(tc.args...))
				if err != nil {
					t.Fatal(err)
				}
				if res.ExitCode != tc.wantExit || res.OOMKilled || res.TimedOut || res.Canceled {
					t.Errorf("result %+v, want exit %d only", res, tc.wantExit)
				}
				if stdout != tc.wantStdout {
					t.Errorf("stdout %q, want %q", stdout, tc.wantStdout)
				}
				if stderr != tc.wantStderr {
					t.Errorf("stderr %q, want %q", stderr, tc.wantStderr)
				}
				if res.Started.IsZero() || res.Ended.Before(res.Started) {
					t.Errorf("bad times %v .. %v", res.Started, res.Ended)
				}
			})
		}
	})
}

func TestRunEnvironment(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		s := f.spec("env")
		s.Env = []string{"OVERRIDE=spec", "EXTRA=a b $HOME"}
		_, stdout, _, err := f.run(t, context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		env := strings.Split(strings.TrimSpace(stdout), "\n")
		for _, want := range []string{"PATH=/bin", "FROM_IMAGE=image", "OVERRIDE=spec", "EXTRA=a b $HOME"} {
			if !slices.Contains(env, want) {
				t.Errorf("env lacks %q: %q", want, env)
			}
		}
		if slices.Contains(env, "OVERRIDE=image") {
			t.Errorf("image value not replaced: %q", env)
		}
	})
}

func TestRunHostNetwork(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		ifs, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		if len(ifs) < 2 {
			t.Skip("the host has only loopback: cannot tell host networking from none")
		}
		s := f.spec("ifaces")
		s.Network = NetworkHost
		_, stdout, _, err := f.run(t, context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(stdout); len(got) != len(ifs) {
			t.Errorf("container sees %q, host has %d interfaces", got, len(ifs))
		}
	})
}

func TestRunMounts(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		in, out := t.TempDir(), t.TempDir()
		files := map[string]string{"a.txt": "alpha\n", "sub/dir/b.bin": "\x00\x01\x02", "sub/c": strings.Repeat("c", 100000)}
		for name, data := range files {
			p := filepath.Join(in, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mounts := []Mount{{Source: out, Destination: "/output_files"}, {Source: in, Destination: "/input_files", ReadOnly: true}}

		t.Run("copy input to output", func(t *testing.T) {
			s := f.spec("copy")
			s.Mounts = mounts
			res, _, stderr, err := f.run(t, context.Background(), s)
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("res %+v err %v stderr %q", res, err, stderr)
			}
			for name, data := range files {
				got, err := os.ReadFile(filepath.Join(out, name))
				if err != nil || string(got) != data {
					t.Errorf("%s: %q %v", name, got, err)
				}
			}
		})
		for _, tc := range []struct {
			path string
			want string
		}{
			{"/output_files/new", "ok\n"},
			{"/input_files/new", "error: open /input_files/new: read-only file system\n"},
		} {
			t.Run("write "+tc.path, func(t *testing.T) {
				s := f.spec("write", tc.path)
				s.Mounts = mounts
				_, stdout, _, err := f.run(t, context.Background(), s)
				if err != nil {
					t.Fatal(err)
				}
				if stdout != tc.want {
					t.Errorf("stdout %q, want %q", stdout, tc.want)
				}
			})
		}
		if _, err := os.Stat(filepath.Join(in, "new")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("read-only input was written: %v", err)
		}
	})
}

func TestRunOOM(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		t.Run("over the limit", func(t *testing.T) {
			s := f.spec("alloc", "256")
			s.MemoryBytes = 32 << 20
			res, _, _, err := f.run(t, context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if !res.OOMKilled || res.ExitCode != 137 {
				t.Errorf("result %+v, want OOMKilled and exit 137", res)
			}
			// The engine's own record, which Run asks when its state missed the OOM, has
			// it too (also after the container's removal).
			if f.dock != nil && !f.dock.oomEvent(t.Context(), s.ID, res.Started) {
				t.Error("the engine recorded no oom event for the container")
			}
		})
		t.Run("under the limit", func(t *testing.T) {
			s := f.spec("alloc", "16")
			s.MemoryBytes = 128 << 20
			res, stdout, _, err := f.run(t, context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if res.OOMKilled || res.ExitCode != 0 || stdout != "allocated 16 MiB\n" {
				t.Errorf("result %+v stdout %q", res, stdout)
			}
		})
	})
}

func TestRunStops(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		// The runtime limit runs from the start, so on a loaded machine it may pass before the
		// program installed its SIGTERM handler (it prints "sleeping" once it has): the
		// handler's own evidence is asserted only when it was in place.
		t.Run("timeout sends TERM", func(t *testing.T) {
			t.Parallel()
			s := f.spec("sleep", "60")
			s.Timeout = 3 * time.Second
			res, stdout, _, err := f.run(t, context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if !res.TimedOut || res.Canceled || res.ExitCode == 0 {
				t.Errorf("result %+v, want timed out", res)
			}
			if strings.HasPrefix(stdout, "sleeping\n") && (res.ExitCode != 143 || stdout != "sleeping\ngot SIGTERM\n") {
				t.Errorf("result %+v stdout %q, want the program's own SIGTERM exit", res, stdout)
			}
		})
		t.Run("TERM ignored: KILL after grace", func(t *testing.T) {
			t.Parallel()
			s := f.spec("sleep-ignore-term", "60")
			s.Timeout = 3 * time.Second
			s.KillGrace = time.Second
			start := time.Now()
			res, stdout, _, err := f.run(t, context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if !res.TimedOut || res.ExitCode == 0 || res.OOMKilled {
				t.Errorf("result %+v, want timed out", res)
			}
			if strings.HasPrefix(stdout, "sleeping\n") {
				if res.ExitCode != 137 {
					t.Errorf("result %+v, want exit 137 (KILL)", res)
				}
				if d := time.Since(start); d < 4*time.Second {
					t.Errorf("took %v, want at least timeout + grace", d)
				}
			}
		})
		t.Run("context canceled", func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := f.spec("sleep", "60")
			var stdout syncBuffer
			stdout.notify = func(s string) {
				if strings.Contains(s, "sleeping") {
					cancel()
				}
			}
			s.Stdout = &stdout
			res, err := f.rt.Run(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Canceled || res.TimedOut || res.ExitCode != 143 {
				t.Errorf("result %+v stdout %q", res, stdout.String())
			}
			if f.oci != nil {
				if _, err := os.Stat(filepath.Join(f.d.root, s.ID)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("container state left: %v", err)
				}
			}
		})
		t.Run("context canceled before start", func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			s := f.spec("sleep", "60")
			cancel()
			res, err := f.rt.Run(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Canceled {
				t.Errorf("result %+v, want canceled", res)
			}
		})
	})
}

func TestRunStartFailure(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		s := f.spec()
		s.Command = []string{"no-such-program"}
		_, _, _, err := f.run(t, context.Background(), s)
		var se *StartError
		if !errors.As(err, &se) || !strings.Contains(se.Message, "no-such-program") {
			t.Fatalf("err %v, want StartError naming the program", err)
		}
		t.Logf("users read: %s", se.Message)
	})
}

func TestRunRefusals(t *testing.T) {
	t.Parallel()
	eachRuntime(t, func(t *testing.T, f *fixture) {
		host := strings.Split(f.image, "/")[0]
		cases := []struct {
			name   string
			mutate func(*Spec)
			want   error
		}{
			{"tag only", func(s *Spec) { s.Image = host + "/testtool:latest" }, ErrNotPinned},
			{"not pulled", func(s *Spec) {
				s.Image = host + "/testtool@sha256:" + strings.Repeat("0", 64)
			}, ErrNotPulled},
			{"bad id", func(s *Spec) { s.ID = "../x" }, ErrInvalidSpec},
			{"no command", func(s *Spec) { s.Command = nil }, ErrInvalidSpec},
			{"relative mount", func(s *Spec) { s.Mounts = []Mount{{Source: "rel", Destination: "/x"}} }, ErrInvalidSpec},
			{"mount over proc", func(s *Spec) { s.Mounts = []Mount{{Source: "/tmp", Destination: "/proc/x"}} }, ErrInvalidSpec},
			{"bad network", func(s *Spec) { s.Network = "bridge" }, ErrInvalidSpec},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				s := f.spec("echo")
				tc.mutate(&s)
				if _, err := f.rt.Run(context.Background(), s); !errors.Is(err, tc.want) {
					t.Errorf("err %v, want %v", err, tc.want)
				}
			})
		}
	})
}

func TestRunImageUser(t *testing.T) {
	t.Parallel()
	requireRunc(t)
	host := newRegistry(t, nil)
	base := toolImage(t)
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	c.User = "1000:2000"
	img, err := mutate.Config(base, c)
	if err != nil {
		t.Fatal(err)
	}
	image := push(t, img, host, "user")
	d := newDirs(t)
	rt := newOCI(t, d)
	if err := rt.Pull(context.Background(), image); err != nil {
		t.Fatal(err)
	}
	f := &fixture{kind: EngineRunc, d: d, rt: rt, oci: rt, image: image}
	_, stdout, _, err := f.run(t, context.Background(), f.spec("id"))
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "uid=1000 gid=2000\n" {
		t.Errorf("stdout %q", stdout)
	}
	assertNoContainers(t, rt, d)
}

func TestReap(t *testing.T) {
	t.Parallel()
	eachEngine(t, testReap)
}

func testReap(t *testing.T, f *fixture) {
	// Simulate an agent that crashed while its container ran: a bundle prepared by Run's own
	// code, started detached, and abandoned.
	s := f.spec("sleep", "600")
	bundle := filepath.Join(f.d.bundles, s.ID)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	release, err := f.oci.prepare(context.Background(), s, bundle)
	if err != nil {
		t.Fatal(err)
	}
	release() // the agent died: the kernel dropped its locks
	// The detached container inherits the engine's stdio: files, not pipes that would never
	// close.
	logf, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(f.oci.engine.path, "--root", f.d.root, "run", "--detach", "--bundle", bundle, s.ID)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("%s run --detach: %v: %s", f.kind, err, out)
	}
	state, err := f.oci.runcCall(context.Background(), "state", s.ID)
	if err != nil || !strings.Contains(string(state), `"running"`) {
		t.Fatalf("leftover not running: %v %s", err, state)
	}

	// A new runtime over the same directories, as the restarted agent. It finds the
	// containers as `runc list` (or `crun list`) does: not a state directory the engine has
	// not written yet.
	rt := newOCIEngine(t, f.d, f.kind)
	if err := os.Mkdir(filepath.Join(f.d.root, "half-made"), 0o700); err != nil {
		t.Fatal(err)
	}
	listed, err := rt.runcCall(context.Background(), "list", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rt.list(); err != nil || !reflect.DeepEqual(got, strings.Fields(string(listed))) || len(got) != 1 {
		t.Fatalf("list() = %v, %v; runc list: %q", got, err, listed)
	}
	if err := os.Remove(filepath.Join(f.d.root, "half-made")); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Reap(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	assertNoContainers(t, rt, f.d)
	if _, err := rt.Reap(context.Background(), true); err != nil {
		t.Errorf("second reap: %v", err)
	}
}

// BenchmarkRunTrivial runs a container that exits at once: with its root an overlay of the
// image's shared unpacked tree (the default), and with a private copy unpacked per run. An op
// is the container's whole life, its deletion included; ms-to-result is what Run takes (the
// deletion is left for Wait, which an agent calls once its final state is reported).
func BenchmarkRunTrivial(b *testing.B) {
	for _, private := range []bool{false, true} {
		name := "shared"
		if private {
			name = "private"
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b)
			f.oci.cfg.PrivateRootfs = private
			ctx := context.Background()
			var toResult time.Duration
			for b.Loop() {
				s := f.spec("exit", "0")
				start := time.Now()
				res, err := f.rt.Run(ctx, s)
				toResult += time.Since(start)
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("res %+v err %v", res, err)
				}
				// The container's deletion, which an agent overlaps with its next steps.
				f.oci.Wait()
			}
			b.ReportMetric(float64(toResult.Milliseconds())/float64(b.N), "ms-to-result/op")
		})
	}
}

func TestRunHostileImage(t *testing.T) {
	t.Parallel()
	requireRunc(t)
	host := newRegistry(t, nil)
	outside := t.TempDir()
	cases := []struct {
		name   string
		layers [][]ent
	}{
		{"dot-dot escape", [][]ent{{file("../../escape", "x")}}},
		{"absolute symlink then a file through it", [][]ent{{symlink("evil", outside)}, {file("evil/pwned", "x")}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tars [][]byte
			for _, l := range tc.layers {
				tars = append(tars, tarOf(t, l...))
			}
			img, err := imagebuild.FromTars(tars, []string{"/x"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			image := push(t, img, host, "hostile")
			d := newDirs(t)
			rt := newOCI(t, d)
			if err := rt.Pull(context.Background(), image); err != nil {
				t.Fatal(err)
			}
			_, err = rt.Run(context.Background(), Spec{ID: "hostile", Image: image, Command: []string{"/x"}})
			if !errors.Is(err, ErrUnsafeLayer) {
				t.Errorf("err %v, want ErrUnsafeLayer", err)
			}
			assertNoContainers(t, rt, d)
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("written outside the rootfs: %v", entries)
			}
		})
	}
}

// TestReapSharedRoot: two agents share the runc root and the bundle directory. The new one
// reaps the containers of dead agents (with a free owner lock, or none) and leaves the live
// agent's running container alone.
//
// runc and crun may share the root (a node whose agents changed engine, or agents configured
// differently): each pair of engines, the live agent's and the dead one's, is a subtest, and
// the reaping agent runs with the live one's.
func TestReapSharedRoot(t *testing.T) {
	t.Parallel()
	for _, liveEngine := range engines {
		for _, deadEngine := range engines {
			t.Run("live "+liveEngine+", dead "+deadEngine, func(t *testing.T) {
				requireEngine(t, deadEngine)
				testReapSharedRoot(t, newEngineFixture(t, liveEngine), deadEngine)
			})
		}
	}
}

func testReapSharedRoot(t *testing.T, f *fixture, deadEngine string) {
	ctx := context.Background()

	// A dead agent's leftover: a detached container whose bundle has an owner lock nobody holds.
	dead := f.spec("sleep", "600")
	dead.ID = "cts-dead-0-aaaa"
	bundle := filepath.Join(f.d.bundles, dead.ID)
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	releaseTree, err := f.oci.prepare(ctx, dead, bundle)
	if err != nil {
		t.Fatal(err)
	}
	releaseTree()
	unlock, err := takeOwnerLock(bundle)
	if err != nil {
		t.Fatal(err)
	}
	unlock() // the owner died
	logf, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(deadEngine, "--root", f.d.root, "run", "--detach", "--bundle", bundle, dead.ID)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("%s run --detach: %v: %s", deadEngine, err, out)
	}
	if got := engineName(f.d.root, dead.ID); got != deadEngine {
		t.Fatalf("the dead agent's container is %s's by its state, want %s's", got, deadEngine)
	}

	// The live agent's container.
	live := f.spec("sleep", "600")
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { _, err := f.rt.Run(runCtx, live); done <- err }()
	waitRunning := time.Now().Add(10 * time.Second)
	for {
		st, err := f.oci.runcCall(ctx, "state", live.ID)
		if err == nil && strings.Contains(string(st), `"running"`) {
			break
		}
		if time.Now().After(waitRunning) {
			t.Fatalf("live container not running: %v %s", err, st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A second agent starts over the same root and bundle directory and reaps.
	other := newOCIEngine(t, f.d, f.kind)
	if _, err := other.Reap(ctx, true); err != nil {
		t.Fatal(err)
	}
	if other.Known(ctx, dead.ID) {
		t.Error("the dead agent's container was not reaped")
	}
	if _, err := os.Stat(bundle); !os.IsNotExist(err) {
		t.Errorf("the dead agent's bundle is still there: %v", err)
	}
	st, err := other.runcCall(ctx, "state", live.ID)
	if err != nil || !strings.Contains(string(st), `"running"`) {
		t.Fatalf("the live agent's container was touched: %v %s", err, st)
	}
	if _, err := os.Stat(filepath.Join(f.d.bundles, live.ID, "config.json")); err != nil {
		t.Errorf("the live agent's bundle was touched: %v", err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("live run: %v", err)
	}
	assertNoContainers(t, other, f.d)
}

// TestRunLeavesDeletionForWait: a container that exited by itself is not deleted while the
// agent uploads and reports (Run returns with it stopped and its bundle in place, and a
// reaper on the node leaves it to its live owner); Wait deletes it and its bundle. An agent
// that dies before Wait leaves a stopped container that the next agent's reap removes.
func TestRunLeavesDeletionForWait(t *testing.T) {
	t.Parallel()
	eachEngine(t, testRunLeavesDeletionForWait)
}

func testRunLeavesDeletionForWait(t *testing.T, f *fixture) {
	ctx := context.Background()
	s := f.spec("exit", "0")
	res, err := f.rt.Run(ctx, s)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %+v %v", res, err)
	}
	bundle := filepath.Join(f.d.bundles, s.ID)
	if !f.rt.Known(ctx, s.ID) {
		t.Fatal("the exited container was deleted before Wait")
	}
	if _, err := os.Stat(bundle); err != nil {
		t.Fatalf("the exited container's bundle: %v", err)
	}
	other := newOCIEngine(t, f.d, f.kind) // another agent on the node
	if left, err := other.Reap(ctx, true); err != nil || len(left) != 0 {
		t.Fatalf("a reaper took a live agent's exited container: %v %v", left, err)
	}
	if !f.rt.Known(ctx, s.ID) {
		t.Fatal("the reaper deleted a live agent's exited container")
	}
	f.oci.Wait()
	if f.rt.Known(ctx, s.ID) {
		t.Error("the container is still known after Wait")
	}
	if _, err := os.Stat(bundle); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the bundle after Wait: %v", err)
	}
	f.oci.Wait() // nothing left: returns at once

	// An agent process that runs a container and exits without Wait.
	s = f.spec("exit", "0")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRunWithoutWait$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CTS_TEST_RUN_WITHOUT_WAIT="+strings.Join([]string{f.d.root, f.d.cache, f.d.bundles, f.image, s.ID, f.kind}, "\n"))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "exited 0") {
		t.Fatalf("the agent that dies before Wait: %v\n%s", err, out)
	}
	if !f.rt.Known(ctx, s.ID) {
		t.Fatal("the dead agent's exited container is gone: the helper did not leave it")
	}
	left, err := f.rt.Reap(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range left {
		found = found || l.Kind == "container" && l.ID == s.ID
	}
	if !found || f.rt.Known(ctx, s.ID) {
		t.Errorf("the dead agent's exited container was not reaped: %v", left)
	}
	if _, err := os.Stat(filepath.Join(f.d.bundles, s.ID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the dead agent's bundle after the reap: %v", err)
	}
}

// TestHelperRunWithoutWait is TestRunLeavesDeletionForWait's dying agent: with
// $CTS_TEST_RUN_WITHOUT_WAIT set (root, cache, bundles, image, container ID and engine, one a
// line) it runs the container to its exit and returns without Wait; otherwise it skips.
func TestHelperRunWithoutWait(t *testing.T) {
	args := strings.Split(os.Getenv("CTS_TEST_RUN_WITHOUT_WAIT"), "\n")
	if len(args) != 6 {
		t.Skip("a helper process of TestRunLeavesDeletionForWait")
	}
	rt := newOCIEngine(t, dirs{root: args[0], cache: args[1], bundles: args[2]}, args[5])
	res, err := rt.Run(context.Background(), Spec{ID: args[4], Image: args[3], Command: []string{"testtool", "exit", "0"},
		MemoryBytes: 256 << 20, CPUs: 1, KillGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("exited %d\n", res.ExitCode)
}
