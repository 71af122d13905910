package container

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestCrunSeccompCache: with crun, the node's first container compiles the profile and the
// agent keeps the program crun made; the next containers get it in config.json's annotation
// (crun compiles nothing) and run under the very same program, confined alike (the probe's
// outputs are equal; TestConfinement checks them against runc's). An entry whose libseccomp
// changed, or that is damaged, is not used.
func TestCrunSeccompCache(t *testing.T) {
	t.Parallel()
	f := newEngineFixture(t, EngineCrun)
	cache := f.oci.filterCacheDir()
	var outputs []string
	var programs [][]byte
	for i := range 3 {
		s := f.spec("probe")
		var stdout syncBuffer
		s.Stdout = &stdout
		res, err := f.rt.Run(context.Background(), s)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("run %d: %+v %v", i, res, err)
		}
		// The container is kept until Wait, with crun's copy of its config.json and the
		// program it loaded.
		b, err := os.ReadFile(filepath.Join(f.d.root, s.ID, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg specs.Spec
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		if _, has := cfg.Annotations[bpfAnnotation]; has != (i > 0) || cfg.Linux.Seccomp == nil {
			t.Errorf("run %d: annotation present %v, profile %v: want the program from the second run on, the profile always", i, has, cfg.Linux.Seccomp != nil)
		}
		prog, err := os.ReadFile(filepath.Join(f.d.root, s.ID, "seccomp.bpf"))
		if err != nil {
			t.Fatal(err)
		}
		programs = append(programs, prog)
		f.oci.Wait()
		outputs = append(outputs, stdout.String())
	}
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || len(entries[0].Name()) != 64 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("cache %s holds %q, want one program named by its key", cache, names)
	}
	if !bytes.Equal(programs[0], programs[1]) || !bytes.Equal(programs[1], programs[2]) {
		t.Errorf("the containers loaded different programs: %d, %d, %d bytes", len(programs[0]), len(programs[1]), len(programs[2]))
	}
	if outputs[0] != outputs[1] || outputs[1] != outputs[2] || !strings.Contains(outputs[0], "Seccomp: 2") {
		t.Errorf("the containers were confined differently:\n%s", strings.Join(outputs, "\n--\n"))
	}
	key := entries[0].Name()
	if _, ok := f.oci.cachedFilter(key); !ok {
		t.Fatal("the entry is not used")
	}

	// libseccomp replaced (its file's metadata changed): the entry is not used.
	entry := filepath.Join(cache, key)
	raw, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	var rec filterRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(filepath.Base(rec.Libseccomp.Path), "libseccomp.so") {
		t.Errorf("the entry names %q as crun's libseccomp", rec.Libseccomp.Path)
	}
	rec.Libseccomp.ModTime++
	changed, _ := json.Marshal(rec)
	if err := os.WriteFile(entry, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.oci.cachedFilter(key); ok {
		t.Error("an entry compiled with another libseccomp is used")
	}
	// Damaged: not a whole number of instructions.
	rec.Libseccomp.ModTime--
	rec.BPF = rec.BPF[:len(rec.BPF)-3]
	damaged, _ := json.Marshal(rec)
	if err := os.WriteFile(entry, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.oci.cachedFilter(key); ok {
		t.Error("a damaged entry is used")
	}
}

// TestCacheKeyRule: the rule added for crun's cache key differs between profiles that differ
// only in an errno value (which crun 1.8's own key leaves out), and does nothing: its action
// is the default one, with the default errno.
func TestCacheKeyRule(t *testing.T) {
	spec, err := runtimeSpec(Spec{ID: "x", Command: []string{"x"}}, v1.Config{}, specs.User{}, 1024, "/cts/x", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	keyOf := func(mutate func(*specs.LinuxSeccomp)) specs.LinuxSyscall {
		b, _ := json.Marshal(spec.Linux.Seccomp)
		var sc specs.LinuxSeccomp
		if err := json.Unmarshal(b, &sc); err != nil {
			t.Fatal(err)
		}
		mutate(&sc)
		n := len(sc.Syscalls)
		if err := addCacheKeyRule(&sc); err != nil {
			t.Fatal(err)
		}
		if len(sc.Syscalls) != n+1 {
			t.Fatalf("%d rules after, %d before", len(sc.Syscalls), n)
		}
		return sc.Syscalls[n]
	}
	same := keyOf(func(*specs.LinuxSeccomp) {})
	if !strings.HasPrefix(same.Names[0], cacheKeyRulePrefix) || same.Action != spec.Linux.Seccomp.DefaultAction ||
		same.ErrnoRet == nil || spec.Linux.Seccomp.DefaultErrnoRet == nil || *same.ErrnoRet != *spec.Linux.Seccomp.DefaultErrnoRet {
		t.Errorf("rule %+v: want the default action %s with the default errno", same, spec.Linux.Seccomp.DefaultAction)
	}
	if again := keyOf(func(*specs.LinuxSeccomp) {}); again.Names[0] != same.Names[0] {
		t.Errorf("the same profile gives two keys: %s, %s", same.Names[0], again.Names[0])
	}
	found := false
	other := keyOf(func(sc *specs.LinuxSeccomp) {
		for i, r := range sc.Syscalls {
			if r.ErrnoRet != nil && !found {
				e := *r.ErrnoRet + 1
				sc.Syscalls[i].ErrnoRet = &e
				found = true
			}
		}
	})
	if !found {
		t.Fatal("the profile has no rule with an errno value")
	}
	if other.Names[0] == same.Names[0] {
		t.Errorf("profiles that differ in an errno value share the key %s", same.Names[0])
	}
}
