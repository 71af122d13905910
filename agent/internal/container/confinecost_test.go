package container

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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
// which is what test/sitebench's bare `runc run` uses. A measuring tool, not a check: it
// skips unless the variable is set. Each run's CPU (runc's, with the children it waited for)
// is printed beside its wall time: it moves less with the machine's load.
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
	variants := []struct {
		name string
		spec *specs.Spec
		keep bool // run with --keep and delete afterwards, untimed, as the agent does
	}{
		{"ours", ours(), true},
		{"ours, runc run without --keep", ours(), false},
		{"without seccomp", func() *specs.Spec { s := ours(); s.Linux.Seccomp = nil; return s }(), true},
		{"seccomp for x86_64 only (no x86, x32)", func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp.Architectures = []specs.Arch{specs.ArchX86_64}
			return s
		}(), true},
		// Not equivalent: without an ABI in the filter, a syscall of that ABI kills the
		// calling thread (libseccomp's bad-arch action, which config.json cannot change); a Go
		// program making one x32 call hangs instead of getting ENOSYS on a kernel without x32.
		{"seccomp for x86_64 and x86 (no x32)", func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86}
			return s
		}(), true},
		{"seccomp with one rule", func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp.Syscalls = []specs.LinuxSyscall{{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(38))}}
			s.Linux.Seccomp.DefaultAction = specs.ActAllow
			return s
		}(), true},
		{"seccomp with socket allowed for every family (weaker: attribution only)", func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp.Syscalls = slices.DeleteFunc(s.Linux.Seccomp.Syscalls, func(c specs.LinuxSyscall) bool {
				return len(c.Args) > 0 && slices.Equal(c.Names, []string{"socket"})
			})
			s.Linux.Seccomp.Syscalls = append(s.Linux.Seccomp.Syscalls, specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow})
			return s
		}(), true},
		{"without memory, CPU and pids limits", func() *specs.Spec {
			s := ours()
			s.Linux.Resources.Memory, s.Linux.Resources.CPU, s.Linux.Resources.Pids = nil, nil, nil
			return s
		}(), true},
		{"without the memory limit", func() *specs.Spec { s := ours(); s.Linux.Resources.Memory = nil; return s }(), true},
		{"without the CPU limit", func() *specs.Spec { s := ours(); s.Linux.Resources.CPU = nil; return s }(), true},
		{"without the pids limit", func() *specs.Spec { s := ours(); s.Linux.Resources.Pids = nil; return s }(), true},
		{"without the devices rule", func() *specs.Spec { s := ours(); s.Linux.Resources.Devices = nil; return s }(), true},
		{"with runc's default cgroup path", func() *specs.Spec { s := ours(); s.Linux.CgroupsPath = ""; return s }(), true},
		{"without seccomp and limits", func() *specs.Spec {
			s := ours()
			s.Linux.Seccomp = nil
			s.Linux.Resources.Memory, s.Linux.Resources.CPU, s.Linux.Resources.Pids = nil, nil, nil
			return s
		}(), true},
		{"without masked and read-only paths", func() *specs.Spec {
			s := ours()
			s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
			return s
		}(), true},
		{"without the cgroup and /tmp mounts", func() *specs.Spec {
			s := ours()
			s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/sys/fs/cgroup" || m.Destination == "/tmp" })
			return s
		}(), true},
		{"without the network namespace", func() *specs.Spec {
			s := ours()
			s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
			return s
		}(), true},
		{"bare (runc spec's default config, as test/sitebench)", bare(), false},
	}
	root := filepath.Join(dir, "runc-root")
	lat, cpu := make([]Latencies, len(variants)), make([]Latencies, len(variants))
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
			args := []string{"--root", root, "run", "--bundle", b, id}
			if v.keep {
				args = slices.Insert(args, 3, "--keep")
			}
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, "runc", args...)
			cmd.Stderr = &stderr
			t0 := time.Now()
			err := cmd.Run()
			lat[i] = append(lat[i], time.Since(t0))
			if cmd.ProcessState != nil {
				// runc's, runc init's and the container's CPU (runc waits for its children).
				cpu[i] = append(cpu[i], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			}
			if err != nil {
				t.Fatalf("%s: runc run: %v: %s", v.name, err, stderr.String())
			}
			if v.keep {
				if b, err := exec.CommandContext(ctx, "runc", "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
					t.Fatalf("%s: runc delete: %v: %s", v.name, err, b)
				}
			}
		}
	}
	t.Logf("load: %s", loadAverage())
	t.Logf("medians of %d, ms (min, max; CPU: user+system of runc, runc init and the container, median):", n)
	t.Logf("  %-55s %6.1f (%.1f, %.1f)", "OCI.prepare (check, overlay, config.json)", ms(prepare.Median()), ms(slices.Min(prepare)), ms(slices.Max(prepare)))
	t.Logf("  %-55s %6.1f (%.1f, %.1f)", "OOM counter read", ms(oom.Median()), ms(slices.Min(oom)), ms(slices.Max(oom)))
	for i, v := range variants {
		t.Logf("  runc run, %-45s %6.1f (%.1f, %.1f; CPU %.1f)", v.name, ms(lat[i].Median()), ms(slices.Min(lat[i])), ms(slices.Max(lat[i])), ms(cpu[i].Median()))
	}
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
