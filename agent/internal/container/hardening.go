package container

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The confinement both runtimes apply, defined once so that `oci` and `docker` cannot drift:
//
//   - no capability at all (every set empty / CapDrop ALL), no new privileges;
//   - the seccomp profile Docker ships (github.com/moby/profiles/seccomp, the maintained
//     source of Docker's and containerd's default), with one change: ptrace and
//     process_vm_readv/writev are denied, as that profile denies them on kernels before 4.8
//     (a batch job has no reason to inspect another process);
//   - runc's default masked and read-only paths (/proc/kcore, /proc/keys, /sys/firmware, ...;
//     /proc/sys, /proc/sysrq-trigger, ...), the same list Docker uses;
//   - a read-only root file system with a size-bounded tmpfs /tmp, mounted nosuid, nodev and
//     noexec (Docker's own tmpfs defaults);
//   - pids and open-file limits, memory (swap included) and CPU limits from the job;
//   - network none (loopback only) unless the site allows the host's.

// maskedPaths are hidden from the container (an empty file or directory over them), as
// `runc spec` and Docker both do.
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
}

// readonlyPaths are mounted read-only in the container.
var readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// DefaultTmpfsBytes bounds the container's /tmp when the runtime's configuration does not.
const DefaultTmpfsBytes = 1 << 30

// tmpfsOptions are the mount options of the container's /tmp (Docker's tmpfs syntax; runc
// takes the same words).
func tmpfsOptions(size int64) []string {
	return []string{"rw", "nosuid", "nodev", "noexec", fmt.Sprintf("size=%d", size), "mode=1777"}
}

// deniedSyscalls are removed from the profile's unconditional allow list (see above).
var deniedSyscalls = []string{"ptrace", "process_vm_readv", "process_vm_writev"}

var profile struct {
	once sync.Once
	json string
	err  error
}

// seccompProfile returns the profile in Docker's JSON format (what `docker run
// --security-opt seccomp=FILE` reads and what the Engine API takes inline), computed once.
func seccompProfile() (string, error) {
	profile.once.Do(func() {
		p := seccomp.DefaultProfile()
		kept := p.Syscalls[:0]
		for _, sc := range p.Syscalls {
			if sc.Action == specs.ActAllow && (sc.Includes == nil || len(sc.Includes.Caps) == 0) {
				sc.Names = slices.DeleteFunc(sc.Names, func(n string) bool { return slices.Contains(deniedSyscalls, n) })
				//lint:ignore SA1019 a profile in the old JSON form names its syscall in Name: keep such entries
				if len(sc.Names) == 0 && sc.Name == "" {
					continue
				}
			}
			kept = append(kept, sc)
		}
		p.Syscalls = kept
		b, err := json.Marshal(p)
		profile.json, profile.err = string(b), err
	})
	return profile.json, profile.err
}

// ociSeccomp renders the profile for a runc config.json of spec (its capabilities select the
// profile's capability-dependent rules: with none, none of them apply).
func ociSeccomp(spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	body, err := seccompProfile()
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	sc, err := seccomp.LoadProfile(body, spec)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	return sc, nil
}
