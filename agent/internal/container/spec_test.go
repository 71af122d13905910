package container

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidate(t *testing.T) {
	ok := Spec{ID: "cts-abc-1-def", Image: "h/i@sha256:x", Command: []string{"x"}}
	cases := []struct {
		name   string
		mutate func(*Spec)
		valid  bool
	}{
		{"minimal", func(*Spec) {}, true},
		{"full", func(s *Spec) {
			s.Env = []string{"A=b", "EMPTY="}
			s.Mounts = []Mount{{Source: "/in", Destination: "/input_files", ReadOnly: true}, {Source: "/o", Destination: "/tmp/out"}}
			s.CPUs, s.MemoryBytes, s.Timeout, s.KillGrace, s.Network = 1.5, 1<<30, time.Hour, time.Second, NetworkHost
		}, true},
		{"empty id", func(s *Spec) { s.ID = "" }, false},
		{"id with slash", func(s *Spec) { s.ID = "a/b" }, false},
		{"id dot-dot", func(s *Spec) { s.ID = ".." }, false},
		{"empty argv0", func(s *Spec) { s.Command = []string{""} }, false},
		{"env without =", func(s *Spec) { s.Env = []string{"A"} }, false},
		{"env without key", func(s *Spec) { s.Env = []string{"=a"} }, false},
		{"relative source", func(s *Spec) { s.Mounts = []Mount{{Source: "in", Destination: "/in"}} }, false},
		{"relative destination", func(s *Spec) { s.Mounts = []Mount{{Source: "/in", Destination: "in"}} }, false},
		{"unclean destination", func(s *Spec) { s.Mounts = []Mount{{Source: "/in", Destination: "/a/../etc"}} }, false},
		{"root destination", func(s *Spec) { s.Mounts = []Mount{{Source: "/in", Destination: "/"}} }, false},
		{"destination under /sys", func(s *Spec) { s.Mounts = []Mount{{Source: "/in", Destination: "/sys/x"}} }, false},
		{"destination /dev", func(s *Spec) { s.Mounts = []Mount{{Source: "/in", Destination: "/dev"}} }, false},
		{"negative cpus", func(s *Spec) { s.CPUs = -1 }, false},
		{"negative memory", func(s *Spec) { s.MemoryBytes = -1 }, false},
		{"negative timeout", func(s *Spec) { s.Timeout = -1 }, false},
		{"unknown network", func(s *Spec) { s.Network = "bridge" }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mutate(&s)
			err := validate(s)
			if tc.valid != (err == nil) {
				t.Fatalf("validate = %v, want valid=%v", err, tc.valid)
			}
			if err != nil && !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("err %v does not wrap ErrInvalidSpec", err)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	cases := []struct {
		name        string
		base, extra []string
		want        []string
	}{
		{"default PATH", nil, []string{"A=1"}, []string{defaultPath, "A=1"}},
		{"image PATH kept", []string{"PATH=/x", "A=1"}, nil, []string{"PATH=/x", "A=1"}},
		{"spec replaces in place", []string{"PATH=/x", "A=1", "B=2"}, []string{"A=3", "C=4"}, []string{"PATH=/x", "A=3", "B=2", "C=4"}},
		{"spec PATH", []string{"A=1"}, []string{"PATH=/y"}, []string{"A=1", "PATH=/y"}},
		{"values with = and spaces", []string{"PATH=/x"}, []string{"Q=a=b c"}, []string{"PATH=/x", "Q=a=b c"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := mergeEnv(tc.base, tc.extra); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRuntimeSpec(t *testing.T) {
	s := Spec{
		ID: "cts-1", Command: []string{"tool", "a b"}, Env: []string{"X=1"},
		Mounts: []Mount{
			{Source: "/h/out/sub", Destination: "/output_files/sub"},
			{Source: "/h/out", Destination: "/output_files"},
			{Source: "/h/in", Destination: "/input_files", ReadOnly: true},
		},
		CPUs: 1.5, MemoryBytes: 1 << 30,
	}
	img := v1.Config{Env: []string{"PATH=/bin"}, WorkingDir: "/work"}
	got, err := runtimeSpec(s, img, specs.User{UID: 5, GID: 6}, 20000, "/cts/cts-1", 1<<20)
	if err != nil {
		t.Fatal(err)
	}

	p := got.Process
	if p.Terminal || !p.NoNewPrivileges || !slices.Equal(p.Args, s.Command) || p.Cwd != "/work" || p.User.UID != 5 || p.User.GID != 6 {
		t.Errorf("process %+v", p)
	}
	c := p.Capabilities
	if c == nil || len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 {
		t.Errorf("capabilities %+v, want all empty", c)
	}
	if len(p.Rlimits) != 1 || p.Rlimits[0] != (specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}) {
		t.Errorf("rlimits %+v", p.Rlimits)
	}
	if !got.Root.Readonly || got.Root.Path != "rootfs" {
		t.Errorf("root %+v", got.Root)
	}
	r := got.Linux.Resources
	if *r.Memory.Limit != 1<<30 || *r.Memory.Swap != 1<<30 || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 || *r.Pids.Limit != DefaultPidsLimit {
		t.Errorf("resources %+v %+v %+v", r.Memory, r.CPU, r.Pids)
	}
	if got.Linux.CgroupsPath != "/cts/cts-1" {
		t.Errorf("cgroups path %q", got.Linux.CgroupsPath)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range got.Linux.Namespaces {
		ns = append(ns, n.Type)
	}
	if !slices.Contains(ns, specs.NetworkNamespace) || len(ns) != 5 {
		t.Errorf("namespaces %v", ns)
	}
	var dests []string
	for _, m := range got.Mounts {
		dests = append(dests, m.Destination)
		if m.Type == "bind" {
			want := []string{"rbind", "nosuid", "nodev", "rw"}
			if m.Destination == "/input_files" {
				want[3] = "ro"
			}
			if !slices.Equal(m.Options, want) {
				t.Errorf("%s options %v, want %v", m.Destination, m.Options, want)
			}
		}
	}
	wantDests := []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/tmp", "/output_files", "/input_files", "/output_files/sub"}
	if !slices.Equal(dests, wantDests) {
		t.Errorf("mount order %v, want %v", dests, wantDests)
	}
	if tmp := got.Mounts[7]; !slices.Equal(tmp.Options, []string{"rw", "nosuid", "nodev", "noexec", "size=1048576", "mode=1777"}) {
		t.Errorf("/tmp options %v", tmp.Options)
	}
	if cg := got.Mounts[6]; cg.Type != "cgroup" || !slices.Contains(cg.Options, "ro") {
		t.Errorf("/sys/fs/cgroup mount %+v, want the cgroup filesystem read-only", cg)
	}
	if !slices.Equal(got.Linux.MaskedPaths, maskedPaths) || !slices.Equal(got.Linux.ReadonlyPaths, readonlyPaths) {
		t.Errorf("masked %v read-only %v", got.Linux.MaskedPaths, got.Linux.ReadonlyPaths)
	}
	// The seccomp profile: Docker's default (deny by default with EPERM), without ptrace, and
	// without the rules that need a capability (the container has none).
	sc := got.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) < 10 {
		t.Fatalf("seccomp %+v", sc)
	}
	allowed := map[string]bool{}
	for _, rule := range sc.Syscalls {
		for _, n := range rule.Names {
			if rule.Action == specs.ActAllow && len(rule.Args) == 0 {
				allowed[n] = true
			}
		}
	}
	for _, n := range []string{"read", "write", "execve", "openat", "exit_group", "fork"} {
		if !allowed[n] {
			t.Errorf("seccomp does not allow %s", n)
		}
	}
	for _, n := range []string{"ptrace", "process_vm_readv", "mount", "unshare", "setns", "bpf", "kexec_load", "init_module", "reboot"} {
		if allowed[n] {
			t.Errorf("seccomp allows %s", n)
		}
	}

	t.Run("host network, low host nofile, no limits", func(t *testing.T) {
		s := Spec{ID: strings.Repeat("x", 100), Command: []string{"x"}, Network: NetworkHost}
		got, err := runtimeSpec(s, v1.Config{}, specs.User{}, 512, "/cts/x", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range got.Linux.Namespaces {
			if n.Type == specs.NetworkNamespace {
				t.Error("host network has its own namespace")
			}
		}
		if got.Process.Rlimits[0].Hard != 512 || got.Process.Cwd != "/" || len(got.Hostname) != 63 {
			t.Errorf("rlimit %+v cwd %q hostname %q", got.Process.Rlimits, got.Process.Cwd, got.Hostname)
		}
		if got.Linux.Resources.Memory != nil || got.Linux.Resources.CPU != nil {
			t.Errorf("limits set: %+v", got.Linux.Resources)
		}
	})
}

func TestResolveUser(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\nstaff:x:50:\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	cases := []struct {
		user     string
		uid, gid uint32
		ok       bool
	}{
		{"", 0, 0, true},
		{"1000", 1000, 1001, true},
		{"4242", 4242, 0, true},
		{"4242:7", 4242, 7, true},
		{"app", 1000, 1001, true},
		{"app:staff", 1000, 50, true},
		{"app:9", 1000, 9, true},
		{"nobody", 0, 0, false},
		{"app:nogroup", 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.user, func(t *testing.T) {
			u, err := resolveUser(root, tc.user)
			if tc.ok != (err == nil) {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && (u.UID != tc.uid || u.GID != tc.gid) {
				t.Errorf("got %d:%d, want %d:%d", u.UID, u.GID, tc.uid, tc.gid)
			}
		})
	}
}
