package untar

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// RemoveAll removes p and everything below it, like os.RemoveAll, for any tree an archive can
// leave behind:
//
//   - of any depth: it holds two directory descriptors at a time and walks back up through
//     "..", where os.RemoveAll keeps one descriptor per level and fails with "too many open
//     files" past the descriptor limit (an archive can make a tree 20,000 levels deep);
//   - whatever the modes of its directories: a directory it may not read, search or write
//     (mode 0, or 0555) is given mode 0700 first, which its owner may always do (root needs
//     none of this).
//
// A missing p is success. Nothing else may change the tree meanwhile (it is the caller's
// scratch directory): RemoveAll never follows a symlink, but the walk back up through ".."
// relies on no directory of the tree being moved while it runs.
func RemoveAll(p string) error {
	err := os.Remove(p)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	fi, lerr := os.Lstat(p)
	if lerr != nil {
		if errors.Is(lerr, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", p, lerr)
	}
	if !fi.IsDir() {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	if err := removeContents(p); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// removeContents empties the directory top, depth first, without recursion.
func removeContents(top string) error {
	cur, err := openDir(unix.AT_FDCWD, top)
	if err != nil {
		return err
	}
	defer func() { cur.Close() }()
	var down []string // the names from top to cur
	for {
		names, err := cur.Readdirnames(1024)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("list %s: %w", top, err)
		}
		if len(names) == 0 {
			if len(down) == 0 {
				return nil
			}
			// cur is empty: go up and remove it.
			up, err := unix.Openat(int(cur.Fd()), "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open the parent of a directory %d levels below %s: %w", len(down), top, err)
			}
			cur.Close()
			cur = os.NewFile(uintptr(up), top)
			name := down[len(down)-1]
			down = down[:len(down)-1]
			if err := unlinkAt(cur, name, unix.AT_REMOVEDIR); err != nil {
				return err
			}
			if _, err := cur.Seek(0, io.SeekStart); err != nil {
				return err
			}
			continue
		}
		descended := false
		for _, n := range names {
			err := unlinkAt(cur, n, 0)
			if err == nil {
				continue
			}
			if !errors.Is(err, unix.EISDIR) {
				return err
			}
			child, err := openDir(int(cur.Fd()), n)
			if err != nil {
				return err
			}
			cur.Close()
			cur, down, descended = child, append(down, n), true
			break
		}
		if !descended {
			// Entries removed while listing: list again from the start rather than trust
			// the directory offset.
			if _, err := cur.Seek(0, io.SeekStart); err != nil {
				return err
			}
		}
	}
}

// openDir opens the directory name in dirfd without following a symlink, giving it mode 0700
// first when its mode forbids listing or searching it.
func openDir(dirfd int, name string) (*os.File, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, name, flags, 0)
	if errors.Is(err, unix.EACCES) {
		// unlinkat said it is a directory (or it is the top); chmod follows symlinks, but
		// nothing moves in the tree meanwhile (see RemoveAll).
		if cerr := unix.Fchmodat(dirfd, name, 0o700, 0); cerr == nil {
			fd, err = unix.Openat(dirfd, name, flags, 0)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", name, err)
	}
	// Removing entries needs write and search permission on the directory itself.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil && st.Mode&0o300 != 0o300 && int(st.Uid) == os.Geteuid() {
		_ = unix.Fchmod(fd, 0o700)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// unlinkAt removes name in dir (flags: 0 or AT_REMOVEDIR); a directory whose mode forbids it
// is given mode 0700 and asked again.
func unlinkAt(dir *os.File, name string, flags int) error {
	err := unix.Unlinkat(int(dir.Fd()), name, flags)
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) && flags == 0 {
		if cerr := unix.Fchmod(int(dir.Fd()), 0o700); cerr == nil {
			err = unix.Unlinkat(int(dir.Fd()), name, flags)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}
