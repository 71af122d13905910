package container

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestConfinementCost times `runc run` of one prepared container (the testtool exiting at
// once, the trivial job's read-only input and writable output bound in) with the config.json
// the agent writes, and with each item of the confinement taken out in turn, interleaved:
// $CTS_BENCH_CONFINEMENT rounds, one run of each variant per round, medians printed. It
// also times the agent's own steps around the run (OCI.prepare: the shared tree's check, the
// overlay mount and config.json; the OOM counter's read) and `runc spec`'s default config,
// which is what test/sitebench's bare `runc run` uses. Where crun can run, the same rounds
// time crun with the config.json the agent writes for it: with the profile alone (the seccomp
// program compiled, as a node's first container), with the program cached (in the annotation,
// as every later one), without seccomp, and bare; each by `crun run` (which deletes the
// container itself, inside the timing) and, for the agent's config, as the agent runs it
// (`crun create`, `crun start`, the container's process waited for; the delete untimed). A
// measuring tool, not a check: it skips unless the variable is set. Each run's CPU (the
// engine's, with the children it waited for; for create and start, theirs and the
// container's) is printed beside its wall time: it moves less with the machine's load.
//
//	CTS_BENCH_CONFINEMENT=20 go test -count=1 -run TestConfinementCost -v ./agent/internal/container/
func TestConfinementCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CTS_BENCH_CONFINEMENT"))
	if n <= 0 {
		t.Skip("set CTS_BENCH_CONFINEMENT to the number of rounds")
	}
	f := newFixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	for _, d := range []string{in, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spec := f.spec("exit", "0")
	spec.Mounts = []Mount{{Source: in, Destination: "/input_files", ReadOnly: true}, {Source: out, Destination: "/output_files"}}

	// The agent's own steps around runc, on bundles of their own (prepared and removed).
	var prepare, oom Latencies
	for i := range n {
		b := filepath.Join(f.d.bundles, fmt.Sprintf("prep-%d", i))
		if err := os.Mkdir(b, 0o700); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		release, err := f.oci.prepare(ctx, spec, b)
		prepare = append(prepare, time.Since(t0))
		if err != nil {
			t.Fatal(err)
		}
		t0 = time.Now()
		f.oci.oomKilled(spec.ID)
		oom = append(oom, time.Since(t0))
		if err := removeBundle(b); err != nil {
			t.Fatal(err)
		}
		release()
	}

	// One bundle whose root every variant uses (root.path is absolute in theirs).
	bundle := filepath.Join(f.d.bundles, "cost")
	if err := os.Mkdir(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	release, err := f.oci.prepare(ctx, spec, bundle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeBundle(bundle); err != nil {
			t.Error(err)
		}
		release()
	})
	raw, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	ours := func() *specs.Spec {
		var s specs.Spec
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		s.Root.Path = filepath.Join(bundle, "rootfs")
		return &s
	}
	bare := func() *specs.Spec {
		d := t.TempDir()
		if b, err := exec.Command("runc", "spec", "--bundle", d).CombinedOutput(); err != nil {
			t.Fatalf("runc spec: %v: %s", err, b)
		}
		b, err := os.ReadFile(filepath.Join(d, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var s specs.Spec
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		o := ours()
		s.Root.Path, s.Process.Terminal, s.Process.Args = o.Root.Path, false, o.Process.Args
		s.Process.Env = o.Process.Env
		s.Mounts = append(s.Mounts, o.Mounts[len(o.Mounts)-2:]...)
		return &s
	}
	type variant struct {
		name   string
		spec   *specs.Spec
		keep   bool   // run with --keep and delete afterwards, untimed, as the agent does
		engine string // runc when ""
		agent  bool   // crun only: create, start and wait, as the agent does
		detach bool   // with agent: `run --detach` and wait, as the agent does with the program cached
	}
	variants := []variant{
		{name: "ours", spec: ours(), keep: true},
		{name: "ours, runc run without --keep", spec: ours(), keep: false},
		{name: "without seccomp", spec: func() *specs.Spec { s := ours(); s.Linux.Seccomp = nil; return s }(), keep: true},
		{name: "seccomp for x86_64 only (no x86, x32)", spec: func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp.Architectures = []specs.Arch{specs.ArchX86_64}
			return s
		}(), keep: true},
		// Not equivalent: without an ABI in the filter, a syscall of that ABI kills the
		// calling thread (libseccomp's bad-arch action, which config.json cannot change); a Go
		// program making one x32 call hangs instead of getting ENOSYS on a kernel without x32.
		{name: "seccomp for x86_64 and x86 (no x32)", spec: func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86}
			return s
		}(), keep: true},
		{name: "seccomp with one rule", spec: func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp.Syscalls = []specs.LinuxSyscall{{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(38))}}
			s.Linux.Seccomp.DefaultAction = specs.ActAllow
			return s
		}(), keep: true},
		{name: "seccomp with socket allowed for every family (weaker: attribution only)", spec: func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp.Syscalls = slices.DeleteFunc(s.Linux.Seccomp.Syscalls, func(c specs.LinuxSyscall) bool {
				return len(c.Args) > 0 && slices.Equal(c.Names, []string{"socket"})
			})
			s.Linux.Seccomp.Syscalls = append(s.Linux.Seccomp.Syscalls, specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow})
			return s
		}(), keep: true},
		{name: "without memory, CPU and pids limits", spec: func() *specs.Spec {
			s := ours()
			s.Linux.Resources.Memory, s.Linux.Resources.CPU, s.Linux.Resources.Pids = nil, nil, nil
			return s
		}(), keep: true},
		{name: "without the memory limit", spec: func() *specs.Spec { s := ours(); s.Linux.Resources.Memory = nil; return s }(), keep: true},
		{name: "without the CPU limit", spec: func() *specs.Spec { s := ours(); s.Linux.Resources.CPU = nil; return s }(), keep: true},
		{name: "without the pids limit", spec: func() *specs.Spec { s := ours(); s.Linux.Resources.Pids = nil; return s }(), keep: true},
		{name: "without the devices rule", spec: func() *specs.Spec { s := ours(); s.Linux.Resources.Devices = nil; return s }(), keep: true},
		{name: "with runc's default cgroup path", spec: func() *specs.Spec { s := ours(); s.Linux.CgroupsPath = ""; return s }(), keep: true},
		{name: "without seccomp and limits", spec: func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp = nil
			s.Linux.Resources.Memory, s.Linux.Resources.CPU, s.Linux.Resources.Pids = nil, nil, nil
			return s
		}(), keep: true},
		{name: "without masked and read-only paths", spec: func() *specs.Spec {
			s := ours()
			s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
			return s
		}(), keep: true},
		{name: "without the cgroup and /tmp mounts", spec: func() *specs.Spec {
			s := ours()
			s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/sys/fs/cgroup" || m.Destination == "/tmp" })
			return s
		}(), keep: true},
		{name: "without the network namespace", spec: func() *specs.Spec {
			s := ours()
			s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
			return s
		}(), keep: true},
		{name: "bare (runc spec's default config, as test/sitebench)", spec: bare()},
	}
	if crunSkip := crunMissing(); crunSkip != "" {
		t.Logf("crun not timed: %s", crunSkip)
	} else {
		cold, warm := crunSpecs(t, f, spec, bundle)
		noSeccomp := func() *specs.Spec { s := cold(); s.Linux.Seccomp = nil; return s }()
		variants = append(variants,
			variant{name: "ours for crun, program cached (annotation), as the agent", spec: warm(), engine: EngineCrun, agent: true, detach: true},
			variant{name: "ours for crun, program cached, created and started", spec: warm(), engine: EngineCrun, agent: true},
			variant{name: "ours for crun, profile compiled, as the agent", spec: cold(), engine: EngineCrun, agent: true},
			variant{name: "ours for crun, program cached (annotation)", spec: warm(), engine: EngineCrun},
			variant{name: "ours for crun, profile compiled", spec: cold(), engine: EngineCrun},
			variant{name: "ours for crun, without seccomp", spec: noSeccomp, engine: EngineCrun},
			variant{name: "bare (runc spec's default config), crun", spec: bare(), engine: EngineCrun},
		)
	}
	root := filepath.Join(dir, "runc-root")
	lat, cpu := make([]Latencies, len(variants)), make([]Latencies, len(variants))
	agentSteps := make([]map[int]Latencies, len(variants)) // crun as the agent: create, start, the process's end
	for round := range n {
		for i, v := range variants {
			b := filepath.Join(dir, "bundle-"+strconv.Itoa(i))
			if round == 0 {
				if err := os.Mkdir(b, 0o700); err != nil {
					t.Fatal(err)
				}
				body, err := json.Marshal(v.spec)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(b, "config.json"), body, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			id := fmt.Sprintf("%scost-%d-%d", f.prefix, i, round)
			eng := cmp.Or(v.engine, EngineRunc)
			if v.agent {
				wall, used, steps := crunAsAgent(t, root, b, id, v.detach)
				lat[i], cpu[i] = append(lat[i], wall), append(cpu[i], used)
				for k, d := range steps {
					if agentSteps[i] == nil {
						agentSteps[i] = map[int]Latencies{}
					}
					agentSteps[i][k] = append(agentSteps[i][k], d)
				}
				continue
			}
			args := []string{"--root", root, "run", "--bundle", b, id}
			if v.keep {
				args = slices.Insert(args, 3, "--keep")
			}
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, eng, args...)
			cmd.Stderr = &stderr
			t0 := time.Now()
			err := cmd.Run()
			lat[i] = append(lat[i], time.Since(t0))
			if cmd.ProcessState != nil {
				// runc's, runc init's and the container's CPU (runc waits for its children).
				cpu[i] = append(cpu[i], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			}
			if err != nil {
				t.Fatalf("%s: %s run: %v: %s", v.name, eng, err, stderr.String())
			}
			if v.keep {
				if b, err := exec.CommandContext(ctx, eng, "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
					t.Fatalf("%s: %s delete: %v: %s", v.name, eng, err, b)
				}
			}
		}
	}
	t.Logf("load: %s", loadAverage())
	t.Logf("medians of %d, ms (min, max; CPU: user+system of runc, runc init and the container, median):", n)
	t.Logf("  %-55s %6.1f (%.1f, %.1f)", "OCI.prepare (check, overlay, config.json)", ms(prepare.Median()), ms(slices.Min(prepare)), ms(slices.Max(prepare)))
	t.Logf("  %-55s %6.1f (%.1f, %.1f)", "OOM counter read", ms(oom.Median()), ms(slices.Min(oom)), ms(slices.Max(oom)))
	for i, v := range variants {
		how := cmp.Or(v.engine, EngineRunc) + " run,"
		if v.agent {
			how = "crun create+start+wait,"
			if v.detach {
				how = "crun run --detach+wait,"
			}
		}
		t.Logf("  %-24s %-62s %6.1f (%.1f, %.1f; CPU %.1f)", how, v.name, ms(lat[i].Median()), ms(slices.Min(lat[i])), ms(slices.Max(lat[i])), ms(cpu[i].Median()))
		if st := agentSteps[i]; st != nil {
			t.Logf("  %-24s %-62s create %.1f, start %.1f, the process's end %.1f", "", "  of which (medians; run --detach counts as create)", ms(st[0].Median()), ms(st[1].Median()), ms(st[2].Median()))
		}
	}
}

// crunMissing says why crun cannot be timed here ("" when it can).
func crunMissing() string {
	if _, err := exec.LookPath(EngineCrun); err != nil {
		return "not installed"
	}
	if err := CrunUsable(); err != nil {
		return err.Error()
	}
	return ""
}

// crunSpecs returns the config.json the agent writes for crun for spec (the cache key rule
// added), with its root at bundle's: cold without the compiled program, warm with it in the
// annotation, as crun compiled it for this profile.
func crunSpecs(t *testing.T, f *fixture, spec Spec, bundle string) (cold, warm func() *specs.Spec) {
	t.Helper()
	d := newDirs(t)
	d.cache = f.d.cache
	o := newOCIEngine(t, d, EngineCrun)
	b := filepath.Join(d.bundles, "crun-cost")
	if err := os.MkdirAll(b, 0o700); err != nil {
		t.Fatal(err)
	}
	release, err := o.prepare(context.Background(), spec, b)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(b, "config.json"))
	if err := errors.Join(err, removeBundle(b)); err != nil {
		t.Fatal(err)
	}
	release()
	cold = func() *specs.Spec {
		var s specs.Spec
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		s.Root.Path = filepath.Join(bundle, "rootfs")
		delete(s.Annotations, bpfAnnotation)
		return &s
	}
	// The program: what `crun create` compiles for the profile.
	cb := filepath.Join(t.TempDir(), "compile")
	if err := os.Mkdir(cb, 0o700); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(cold())
	if err := os.WriteFile(filepath.Join(cb, "config.json"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	id := f.prefix + "cost-compile"
	if err := crunCreate(t, d.root, cb, id, ""); err != nil {
		t.Fatal(err)
	}
	prog, err := os.ReadFile(filepath.Join(d.root, id, "seccomp.bpf"))
	if out, derr := exec.Command(EngineCrun, "--root", d.root, "delete", "--force", id).CombinedOutput(); derr != nil {
		t.Fatalf("crun delete: %v: %s", derr, out)
	}
	if err != nil {
		t.Fatal(err)
	}
	warm = func() *specs.Spec {
		s := cold()
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[bpfAnnotation] = base64.StdEncoding.EncodeToString(prog)
		return s
	}
	return cold, warm
}

// crunCreate runs `crun create` (its output to a file: the container keeps crun's stdio open).
func crunCreate(t *testing.T, root, bundle, id, pidFile string) error {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "create.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	args := []string{"--root", root, "create", "--bundle", bundle}
	if pidFile != "" {
		args = append(args, "--pid-file", pidFile)
	}
	cmd := exec.Command(EngineCrun, append(args, id)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(out.Name())
		return fmt.Errorf("crun create: %w: %s", err, msg)
	}
	return nil
}

// crunAsAgent runs the container of bundle as the agent does with crun (create and start, or
// with detach `run --detach`; its process waited for, this process being the subreaper) and
// returns the wall time to its end, the CPU of crun's processes and the container's, and the
// steps' times (0: create or run --detach, 1: start, 2: the process's end); the container is
// deleted afterwards, untimed.
func crunAsAgent(t *testing.T, root, bundle, id string, detach bool) (wall, cpu time.Duration, steps map[int]time.Duration) {
	t.Helper()
	if err := becomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	t0 := time.Now()
	sub := []string{"create"}
	if detach {
		sub = []string{"run", "--detach"}
	}
	create := exec.Command(EngineCrun, append(append([]string{"--root", root}, sub...), "--bundle", bundle, "--pid-file", pidFile, id)...)
	if err := create.Run(); err != nil {
		t.Fatalf("crun %s: %v (run it by hand for its message)", sub[0], err)
	}
	created := time.Now()
	if detach {
		pid, err := readPid(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		exited, ws, err := adopt(pid, true)
		if err != nil {
			t.Fatal(err)
		}
		var ru syscall.Rusage
		if !exited {
			if _, err := syscall.Wait4(pid, &ws, 0, &ru); err != nil {
				t.Fatal(err)
			}
		}
		wall = time.Since(t0)
		cpu = create.ProcessState.UserTime() + create.ProcessState.SystemTime() + time.Duration(ru.Utime.Nano()+ru.Stime.Nano())
		steps = map[int]time.Duration{0: created.Sub(t0), 1: 0, 2: time.Since(created)}
		if !ws.Exited() || ws.ExitStatus() != 0 {
			t.Fatalf("the container ended with %#x", uint32(ws))
		}
		if out, err := exec.Command(EngineCrun, "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
			t.Fatalf("crun delete: %v: %s", err, out)
		}
		return wall, cpu, steps
	}
	pid, err := readPid(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	start := exec.Command(EngineCrun, "--root", root, "start", id)
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("crun start: %v: %s", err, out)
	}
	started := time.Now()
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	if _, err := syscall.Wait4(pid, &ws, 0, &ru); err != nil {
		t.Fatal(err)
	}
	wall = time.Since(t0)
	steps = map[int]time.Duration{0: created.Sub(t0), 1: started.Sub(created), 2: time.Since(started)}
	cpu = create.ProcessState.UserTime() + create.ProcessState.SystemTime() + start.ProcessState.UserTime() + start.ProcessState.SystemTime() +
		time.Duration(ru.Utime.Nano()+ru.Stime.Nano())
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("the container ended with %#x", uint32(ws))
	}
	if out, err := exec.Command(EngineCrun, "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
		t.Fatalf("crun delete: %v: %s", err, out)
	}
	return wall, cpu, steps
}

// Latencies are durations whose median a measuring test reports.
type Latencies []time.Duration

// Median is the middle duration (0 when empty).
func (l Latencies) Median() time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return string(bytes.TrimSpace(b))
}
