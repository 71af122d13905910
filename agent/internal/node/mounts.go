package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kbase/cts/agent/internal/untar"
)

// removeTree removes p and everything below it, after detaching whatever is mounted below p
// (p itself may be a mount point a site set up, and stays one): an agent that died between mounting its container's root (an overlay in its
// bundle) and handing it to the runtime leaves a mount there, and removing through a mount
// would reach into another file system.
func removeTree(p string) error {
	if err := detachMounts(p); err != nil {
		return err
	}
	return untar.RemoveAll(p)
}

// detachMounts lazily unmounts every mount point below dir, deepest first.
func detachMounts(dir string) error {
	points, err := mountsBelow(filepath.Clean(dir))
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range points {
		if err := unix.Unmount(m, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// mountsBelow lists the mount points of this process's mount namespace below dir, deepest
// first.
func mountsBelow(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // no /proc: nothing is ours to unmount
	}
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		m := unescapeMountinfo(f[4])
		if strings.HasPrefix(m, dir+"/") {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space, ...) in a mount point.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
