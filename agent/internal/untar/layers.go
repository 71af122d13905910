package untar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// layerEntry applies one entry with the Layers policy: an entry replaces what lower layers had
// at its path (a directory merges into a directory), whiteouts delete.
func (x *Extractor) layerEntry(ctx context.Context, name string, hdr *tar.Header, r io.Reader) error {
	if name == "." {
		return nil // the root keeps the mode the runtime gave it
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(dir, base)
	}
	// Layers may omit parent entries. MkdirAll follows symlinks only inside the root.
	if err := x.parents(name); err != nil {
		return err
	}
	x.touch(name)
	if err := x.clear(name, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}

	mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	switch {
	case hdr.Typeflag == tar.TypeDir:
		if err := x.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return x.fsErr("mkdir", name, err)
		}
		if !x.chown {
			// Without root, a directory the agent cannot write or search would stop the
			// layers above it and the cleanup.
			mode |= 0o700
		}
		return x.setAttrs(name, hdr, mode, false)
	case isRegular(hdr.Typeflag):
		err := x.writeFile(ctx, name, r, hdr.Size, func(f *os.File) error {
			// Ownership, then mode: chown clears set-id bits.
			if x.chown {
				if err := f.Chown(hdr.Uid, hdr.Gid); err != nil {
					return err
				}
			}
			return f.Chmod(mode)
		})
		if err != nil {
			return err
		}
		// After the last write, which moves the times (Linux sets times on a descriptor only
		// through /proc).
		if err := x.root.Chtimes(name, hdr.ModTime, hdr.ModTime); err != nil {
			return x.fsErr("chtimes", name, err)
		}
		return nil
	case hdr.Typeflag == tar.TypeSymlink:
		if err := checkTarget(hdr.Linkname); err != nil {
			return err
		}
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			return x.fsErr("symlink", name, err)
		}
		return x.setAttrs(name, hdr, 0, true)
	case hdr.Typeflag == tar.TypeLink:
		// A hard link names another member of the archive; some writers spell it from "/".
		// os.Root resolves it inside the root either way.
		target, err := cleanName(strings.TrimLeft(hdr.Linkname, "/"))
		if err != nil || target == "." {
			return fmt.Errorf("%w: hard link to %s", ErrUnsafe, quote(hdr.Linkname))
		}
		if err := x.root.Link(target, name); err != nil {
			err = x.fsErr("hard link to "+quote(hdr.Linkname)+" as", name, err)
			if errors.Is(err, ErrNoSpace) {
				return err
			}
			return fmt.Errorf("%w: %w", ErrUnsafe, err)
		}
		return nil
	}
	// Devices and FIFOs (the runtime provides /dev), and types this package does not know.
	x.skipped++
	if x.opts.OnSkip != nil {
		x.opts.OnSkip(name, hdr.Typeflag)
	}
	return nil
}

// clear removes what is at name unless both it and the new entry are directories. Lstat does
// not follow a final symlink: a symlink is replaced, never written through.
func (x *Extractor) clear(name string, dir bool) error {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafe, x.fsErr("lstat", name, err))
	}
	if fi.IsDir() && dir {
		return nil
	}
	if err := x.root.RemoveAll(name); err != nil {
		return x.fsErr("replace", name, err)
	}
	return nil
}

// setAttrs applies ownership then mode (chown clears set-id bits, so it goes first).
// Symlinks get ownership only: chmod would follow them.
func (x *Extractor) setAttrs(name string, hdr *tar.Header, mode fs.FileMode, symlink bool) error {
	if x.chown {
		if err := x.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return x.fsErr("chown", name, err)
		}
	}
	if symlink {
		return nil
	}
	if err := x.root.Chmod(name, mode); err != nil {
		return x.fsErr("chmod", name, err)
	}
	return nil
}

// touch marks name and its ancestors as created by the current layer.
func (x *Extractor) touch(name string) {
	for p := name; p != "." && !x.touched[p]; p = path.Dir(p) {
		x.touched[p] = true
	}
}

// whiteout applies ".wh.<name>" (delete name from lower layers) or ".wh..wh..opq" (the
// directory hides everything lower layers put in it).
func (x *Extractor) whiteout(dir, base string) error {
	if base == whiteoutOpaque {
		if dir != "." {
			if err := x.parents(dir + "/" + base); err != nil {
				return err
			}
		}
		x.touch(dir)
		return x.removeLower(dir)
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." || strings.HasPrefix(target, whiteoutPrefix) {
		return fmt.Errorf("%w: whiteout %s", ErrUnsafe, quote(path.Join(dir, base)))
	}
	if err := x.root.RemoveAll(path.Join(dir, target)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: whiteout %s: %w", ErrUnsafe, quote(path.Join(dir, base)), err)
	}
	return nil
}

// removeLower removes every entry under dir that the current layer did not create.
func (x *Extractor) removeLower(dir string) error {
	f, err := x.root.Open(dir)
	if err != nil {
		return fmt.Errorf("%w: opaque whiteout in %s: %w", ErrUnsafe, quote(dir), err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("opaque whiteout in %s: %w", quote(dir), err)
	}
	for _, n := range names {
		p := path.Join(dir, n)
		if !x.touched[p] {
			if err := x.root.RemoveAll(p); err != nil {
				return fmt.Errorf("opaque whiteout in %s: %w", quote(dir), err)
			}
			continue
		}
		if fi, err := x.root.Lstat(p); err == nil && fi.IsDir() {
			if err := x.removeLower(p); err != nil {
				return err
			}
		}
	}
	return nil
}
