package container

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	cpuPeriod   = 100000 // µs, the kernel's default CFS period
	nofileLimit = 1024
)

// idPattern is runc's own container id rule; ids are also bundle directory names.
var idPattern = regexp.MustCompile(`^[\w+\-.]+$`)

// validate checks a Spec before anything touches the disk.
func validate(s Spec) error {
	var errs []string
	if !idPattern.MatchString(s.ID) || s.ID == "." || s.ID == ".." || len(s.ID) > 200 {
		errs = append(errs, fmt.Sprintf("id %q: want 1-200 of [A-Za-z0-9_+-.]", s.ID))
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		errs = append(errs, "empty command")
	}
	for _, e := range s.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			errs = append(errs, fmt.Sprintf("env %q: want KEY=value", e))
		}
	}
	for _, m := range s.Mounts {
		if !filepath.IsAbs(m.Source) {
			errs = append(errs, fmt.Sprintf("mount source %q: not absolute", m.Source))
		}
		if !path.IsAbs(m.Destination) || path.Clean(m.Destination) != m.Destination || m.Destination == "/" {
			errs = append(errs, fmt.Sprintf("mount destination %q: want a clean absolute path other than /", m.Destination))
		}
		for _, reserved := range []string{"/proc", "/sys", "/dev"} {
			if m.Destination == reserved || strings.HasPrefix(m.Destination, reserved+"/") {
				errs = append(errs, fmt.Sprintf("mount destination %q: under reserved %s", m.Destination, reserved))
			}
		}
	}
	if s.CPUs < 0 || math.IsNaN(s.CPUs) || math.IsInf(s.CPUs, 0) {
		errs = append(errs, fmt.Sprintf("cpus %v: negative", s.CPUs))
	}
	if s.MemoryBytes < 0 {
		errs = append(errs, fmt.Sprintf("memory %d: negative", s.MemoryBytes))
	}
	if s.PidsLimit < 0 {
		errs = append(errs, fmt.Sprintf("pids limit %d: negative", s.PidsLimit))
	}
	if s.Timeout < 0 || s.KillGrace < 0 {
		errs = append(errs, "negative timeout or kill grace")
	}
	switch s.Network {
	case "", NetworkNone, NetworkHost:
	default:
		errs = append(errs, fmt.Sprintf("network %q: want %q or %q", s.Network, NetworkNone, NetworkHost))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, strings.Join(errs, "; "))
	}
	return nil
}

// mergeEnv appends extra to base; a key in extra replaces the same key in base (in place), and
// PATH gets the usual default when neither sets it (runc resolves Command[0] with it).
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra)+1)
	at := map[string]int{}
	for _, e := range append(append([]string(nil), base...), extra...) {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := at[k]; ok {
			out[i] = e
			continue
		}
		at[k] = len(out)
		out = append(out, e)
	}
	if _, ok := at["PATH"]; !ok {
		out = append([]string{defaultPath}, out...)
	}
	return out
}

// ociVersion is the runtime-spec version config.json declares: the one runc 1.1 (1.0.2-dev)
// and crun 1.8 (which refuses any version without "1.0" in it) implement. The Go module's
// specs.Version is newer than both; nothing in the file is newer than 1.0.2.
const ociVersion = "1.0.2"

// runtimeSpec builds the runc config.json for a container, with the confinement of
// hardening.go. It is pure: everything it needs from the image or the host is passed in.
func runtimeSpec(s Spec, img v1.Config, user specs.User, hostNofile uint64, cgroupsPath string, tmpfsBytes int64) (*specs.Spec, error) {
	cwd := img.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	nofile := uint64(nofileLimit)
	if hostNofile > 0 && hostNofile < nofile {
		nofile = hostNofile
	}
	hostname := s.ID
	if len(hostname) > 63 {
		hostname = hostname[:63]
	}

	namespaces := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
	}
	if s.Network != NetworkHost {
		// runc brings up loopback in a fresh network namespace, and nothing else.
		namespaces = append(namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}

	res := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Pids:    &specs.LinuxPids{Limit: ptr(pidsOf(s))},
	}
	if s.MemoryBytes > 0 {
		// swap is memory+swap: equal values leave no swap.
		res.Memory = &specs.LinuxMemory{Limit: ptr(s.MemoryBytes), Swap: ptr(s.MemoryBytes)}
	}
	if s.CPUs > 0 {
		quota := int64(math.Ceil(s.CPUs * cpuPeriod))
		res.CPU = &specs.LinuxCPU{Quota: ptr(max(quota, 1000)), Period: ptr(uint64(cpuPeriod))}
	}

	spec := &specs.Spec{
		Version:  ociVersion,
		Hostname: hostname,
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{
			Terminal: false,
			User:     user,
			Args:     append([]string(nil), s.Command...),
			Env:      mergeEnv(img.Env, s.Env),
			Cwd:      cwd,
			// Every set empty: the process has no capability at all, even as uid 0.
			Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{}, Effective: []string{}, Permitted: []string{}, Inheritable: []string{}, Ambient: []string{},
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile}},
			NoNewPrivileges: true,
		},
		Mounts: mounts(s.Mounts, tmpfsBytes),
		Linux: &specs.Linux{
			CgroupsPath:   cgroupsPath,
			Resources:     res,
			Namespaces:    namespaces,
			MaskedPaths:   slices.Clone(maskedPaths),
			ReadonlyPaths: slices.Clone(readonlyPaths),
		},
	}
	sc, err := ociSeccomp(spec)
	if err != nil {
		return nil, err
	}
	spec.Linux.Seccomp = sc
	return spec, nil
}

// mounts returns runc's default mounts, a writable /tmp of tmpfsBytes, then the bind mounts
// with parents before children.
func mounts(binds []Mount, tmpfsBytes int64) []specs.Mount {
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		// The container's own cgroup, read-only, as Docker mounts it: a program can read the
		// limits it runs under (CPU quota, memory, pids) and change none of them.
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		// The root is read-only; programs still expect a writable /tmp. Its pages are
		// charged to the container's memory limit.
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: tmpfsOptions(tmpfsBytes)},
	}
	sorted := append([]Mount(nil), binds...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return strings.Count(sorted[i].Destination, "/") < strings.Count(sorted[j].Destination, "/")
	})
	for _, b := range sorted {
		// "ro" makes the bind itself read-only; mounts under Source (rare: inputs and
		// refdata are plain directories) would keep their own flags.
		opts := []string{"rbind", "nosuid", "nodev", "rw"}
		if b.ReadOnly {
			opts[3] = "ro"
		}
		ms = append(ms, specs.Mount{Destination: b.Destination, Type: "bind", Source: b.Source, Options: opts})
	}
	return ms
}

func ptr[T any](v T) *T { return &v }

// pidsOf is the Spec's pids limit, DefaultPidsLimit when unset.
func pidsOf(s Spec) int64 {
	if s.PidsLimit > 0 {
		return s.PidsLimit
	}
	return DefaultPidsLimit
}

// resolveUser turns the image config's User ("", "uid", "uid:gid", "name", "name:group") into
// numeric ids, reading the image's /etc/passwd and /etc/group through root when names are
// used. An empty User is root (0:0), which holds no capability here.
func resolveUser(root *os.Root, user string) (specs.User, error) {
	if user == "" {
		return specs.User{}, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	var out specs.User
	var passwdGID *uint32
	if id, err := strconv.ParseUint(u, 10, 32); err == nil {
		out.UID = uint32(id)
		if e, ok := lookupDB(root, "etc/passwd", func(f []string) bool { return len(f) > 3 && f[2] == u }); ok {
			passwdGID = parseID(e[3])
		}
	} else {
		e, ok := lookupDB(root, "etc/passwd", func(f []string) bool { return len(f) > 3 && f[0] == u })
		if !ok {
			return specs.User{}, fmt.Errorf("image user %q: not in the image's /etc/passwd", user)
		}
		uid := parseID(e[2])
		if uid == nil {
			return specs.User{}, fmt.Errorf("image user %q: bad /etc/passwd entry", user)
		}
		out.UID, passwdGID = *uid, parseID(e[3])
	}
	switch {
	case !hasGroup:
		if passwdGID != nil {
			out.GID = *passwdGID
		}
	case parseID(g) != nil:
		out.GID = *parseID(g)
	default:
		e, ok := lookupDB(root, "etc/group", func(f []string) bool { return len(f) > 2 && f[0] == g })
		gid := (*uint32)(nil)
		if ok {
			gid = parseID(e[2])
		}
		if gid == nil {
			return specs.User{}, fmt.Errorf("image user %q: group not in the image's /etc/group", user)
		}
		out.GID = *gid
	}
	return out, nil
}

func parseID(s string) *uint32 {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return nil
	}
	v := uint32(id)
	return &v
}

// lookupDB returns the first colon-separated line of file (inside root) that match accepts.
func lookupDB(root *os.Root, file string, match func([]string) bool) ([]string, bool) {
	b, err := root.ReadFile(file)
	if err != nil {
		return nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Split(line, ":"); match(f) {
			return f, true
		}
	}
	return nil, false
}
