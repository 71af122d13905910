package args

import (
	"fmt"
	"path"
	"strings"
)

// Limits of a job's command line, so that a job the container runtimes could not start is
// refused at submit instead of failing on the worker. The byte limits follow Linux execve:
// one string (argument or KEY=value, with its NUL) may be at most 128 KiB (MAX_ARG_STRLEN),
// and all of them together at most a quarter of the stack limit, 2 MiB with the usual 8 MiB;
// CTS keeps half of that for the image's own environment and the runtime.
const (
	// MaxArgs bounds the items of params.args.
	MaxArgs = 10000
	// MaxEnvironment bounds the entries of params.environment.
	MaxEnvironment = 1000
	// MaxCommandBytes bounds one container's generated command and environment: the sum,
	// over every string, of its bytes plus 9 (its NUL and its 8-byte pointer), as execve
	// counts them.
	MaxCommandBytes = 1 << 20
	// MaxStringBytes bounds one generated argument or environment entry (KEY=value).
	MaxStringBytes = 128<<10 - 1
)

// CommandError is a container's generated command line that exceeds a limit.
type CommandError struct {
	// Container is the container number.
	Container int
	// Msg says which limit, in the user's terms.
	Msg string
}

// Error returns the message.
func (e *CommandError) Error() string {
	return fmt.Sprintf("The command line of container %d is too long for the container runtime: %s", e.Container, e.Msg)
}

// CheckCommand checks the command and environment Generate produced for container against
// MaxStringBytes and MaxCommandBytes. It returns a *CommandError or nil.
func CheckCommand(container int, cmd, env []string) error {
	total := 0
	for i, s := range cmd {
		if len(s) > MaxStringBytes {
			return &CommandError{Container: container, Msg: fmt.Sprintf(
				"argument %d is %d bytes, more than the %d bytes one argument may have; "+
					"use a manifest file or more containers instead of a long file list", i, len(s), MaxStringBytes)}
		}
		total += len(s) + 9
	}
	for _, s := range env {
		if len(s) > MaxStringBytes {
			k, _, _ := strings.Cut(s, "=")
			return &CommandError{Container: container, Msg: fmt.Sprintf(
				"environment variable %s is %d bytes, more than the %d bytes one variable may have; "+
					"use a manifest file or more containers instead of a long file list", k, len(s), MaxStringBytes)}
		}
		total += len(s) + 9
	}
	if total > MaxCommandBytes {
		return &CommandError{Container: container, Msg: fmt.Sprintf(
			"its %d arguments and %d environment variables take %d bytes, more than the %d bytes a container's command line may have; "+
				"use a manifest file or more containers", len(cmd), len(env), total, MaxCommandBytes)}
	}
	return nil
}

// reservedMounts are the folders the container runtimes mount themselves: a job's mount point
// may not be one of them or below them (runc and Docker refuse or shadow such mounts).
var reservedMounts = []string{"/proc", "/sys", "/dev"}

// tmpMount is the runtimes' writable tmpfs; a bind mount on it conflicts with it under Docker.
const tmpMount = "/tmp"

// CleanMountPoint returns the normalised form of a mount point that matches
// AbsolutePathPattern: "." and ".." segments resolved, no trailing "/".
func CleanMountPoint(p string) string { return path.Clean(p) }

// mountPointProblem returns why the (pattern-valid) mount point p cannot be used, or "".
func mountPointProblem(p string) string {
	c := path.Clean(p)
	resolved := ""
	if c != strings.TrimSuffix(p, "/") {
		resolved = " (" + c + " once its '.' and '..' segments are resolved)"
	}
	if c == "/" {
		return fmt.Sprintf("Mount point %s%s is the container's root folder; choose a folder such as /data", p, resolved)
	}
	for _, r := range reservedMounts {
		if c == r || strings.HasPrefix(c, r+"/") {
			return fmt.Sprintf("Mount point %s%s is in %s, which the container runtime provides itself; choose a folder such as /data", p, resolved, r)
		}
	}
	if c == tmpMount {
		return fmt.Sprintf("Mount point %s%s is the container's temporary folder %s, which the container runtime provides itself; choose a folder such as /data", p, resolved, tmpMount)
	}
	return ""
}

// MountPointProblem returns why a mount point ValidMountPoint accepts cannot be used ("" if
// it can): it is, or is inside, a folder the container runtimes provide themselves, once its
// "." and ".." segments are resolved.
func MountPointProblem(p string) string { return mountPointProblem(p) }

// nested reports whether one of two clean absolute paths is the other or inside it.
func nested(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"/") || strings.HasPrefix(b, a+"/")
}
