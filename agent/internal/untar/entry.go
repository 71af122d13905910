package untar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/kbase/cts/shared/checksum"
)

// entry applies one header (already counted) and its data.
func (x *Extractor) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // archive-wide PAX records: nothing to create
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if x.opts.Mode == Layers {
		return x.layerEntry(ctx, name, hdr, r)
	}
	return x.treeEntry(ctx, name, hdr, r)
}

// isRegular reports the type flags whose data is a regular file's content. '\x00' never
// reaches here: archive/tar's reader turns it into TypeReg (or TypeDir for a name ending in
// "/").
func isRegular(t byte) bool {
	return t == tar.TypeReg || t == tar.TypeCont || t == tar.TypeGNUSparse
}

// parents creates the missing parent directories of name, each counted against MaxEntries
// before any is made. In Tree mode the parent must resolve inside the tree through its links.
func (x *Extractor) parents(name string) error {
	dir := parentOf(name)
	if dir == "." {
		return nil
	}
	if x.opts.Mode == Tree {
		if err := x.resolveInside(dir); err != nil {
			return err
		}
	}
	missing := x.missingDirs(dir)
	if missing == 0 {
		return nil
	}
	if err := x.count(missing); err != nil {
		return err
	}
	if err := x.root.MkdirAll(dir, 0o755); err != nil {
		err = x.fsErr("create the parents of", name, err)
		if x.opts.Mode == Layers && !errors.Is(err, ErrNoSpace) {
			// A parent that is a file, or a symlink os.Root will not follow (absolute or
			// climbing out): the layer is malformed or hostile.
			return fmt.Errorf("%w: %w", ErrUnsafe, err)
		}
		return err
	}
	return nil
}

// missingDirs counts the directories MkdirAll(dir) would create. Existence is monotone along
// the prefixes of dir, so a binary search costs O(log depth) lookups of O(depth) each: a
// name thousands of levels deep is counted without thousands of lookups.
func (x *Extractor) missingDirs(dir string) int {
	if x.isDir(dir) {
		return 0
	}
	comps := strings.Split(dir, "/")
	first := sort.Search(len(comps)-1, func(i int) bool { return !x.isDir(strings.Join(comps[:i+1], "/")) })
	return len(comps) - first
}

// isDir reports whether p resolves (through symlinks inside the root) to a directory.
func (x *Extractor) isDir(p string) bool {
	fi, err := x.root.Stat(p)
	return err == nil && fi.IsDir()
}

// writeFile creates the regular file name from r (size bytes, or until EOF when size < 0),
// bounded by MaxBytes, and calls finish on it before closing it (attributes set through the
// descriptor cost no path walk). O_EXCL: it never opens an existing file nor follows a link
// planted under the name. In Tree mode it records the file with its CRC64/NVME.
func (x *Extractor) writeFile(ctx context.Context, name string, r io.Reader, size int64, finish func(*os.File) error) error {
	if size >= 0 {
		if err := x.reserve(size); err != nil {
			return err
		}
		r = io.LimitReader(r, size)
	}
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if x.opts.Mode == Tree && errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s appears twice", ErrUnsafe, quote(name))
		}
		return x.fsErr("create", name, err)
	}
	var crc hash.Hash64
	if x.opts.Mode == Tree {
		crc = checksum.New()
	}
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	var n int64
	err = func() error {
		for {
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
			m, rerr := r.Read(buf)
			if m > 0 {
				n += int64(m)
				if err := x.addBytes(int64(m)); err != nil {
					return err
				}
				if crc != nil {
					crc.Write(buf[:m])
				}
				if _, err := f.Write(buf[:m]); err != nil {
					return x.fsErr("write", name, err)
				}
			}
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			if rerr != nil {
				return fmt.Errorf("read %s: %w", quote(name), rerr)
			}
		}
	}()
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("read %s: %d bytes, the header says %d: %w", quote(name), n, size, io.ErrUnexpectedEOF)
	}
	if err == nil && finish != nil {
		if err = finish(f); err != nil {
			err = x.fsErr("set the attributes of", name, err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = x.fsErr("close", name, cerr)
	}
	if err != nil {
		return err
	}
	if x.opts.Mode == Tree {
		x.files[name] = File{Path: name, Size: n, CRC64NVME: checksum.Encode(crc.Sum64())}
	}
	return nil
}

// treeEntry applies one entry with the Tree policy.
func (x *Extractor) treeEntry(ctx context.Context, name string, hdr *tar.Header, r io.Reader) error {
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return nil // the root keeps its mode
		}
		return fmt.Errorf("%w: a non-directory named like the root", ErrUnsafe)
	}
	if err := x.reserved(name); err != nil {
		return err
	}
	switch {
	case hdr.Typeflag == tar.TypeDir:
		if err := x.parents(name); err != nil {
			return err
		}
		if err := x.root.Mkdir(name, 0o755); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return x.fsErr("mkdir", name, err)
			}
			// A repeated directory merges; anything else under its name is a duplicate.
			if fi, lerr := x.root.Lstat(name); lerr != nil || !fi.IsDir() {
				return fmt.Errorf("%w: %s appears twice", ErrUnsafe, quote(name))
			}
		}
		if err := x.root.Chmod(name, 0o755); err != nil {
			return x.fsErr("chmod", name, err)
		}
		return nil
	case isRegular(hdr.Typeflag):
		if err := x.parents(name); err != nil {
			return err
		}
		return x.writeFile(ctx, name, r, hdr.Size, treeFinish(fs.FileMode(hdr.Mode)&0o755|0o644))
	case hdr.Typeflag == tar.TypeSymlink:
		if err := checkTarget(hdr.Linkname); err != nil {
			return err
		}
		if path.IsAbs(hdr.Linkname) {
			return fmt.Errorf("%w: symlink to the absolute path %s", ErrUnsafe, quote(hdr.Linkname))
		}
		if err := x.parents(name); err != nil {
			return err
		}
		// Not path.Join: cleaning "x/y/.." lexically would skip the link y may be.
		if err := x.resolveInside(parentOf(name) + "/" + hdr.Linkname); err != nil {
			return fmt.Errorf("symlink to %s: %w", quote(hdr.Linkname), err)
		}
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %s appears twice", ErrUnsafe, quote(name))
			}
			return x.fsErr("symlink", name, err)
		}
		x.links[name] = hdr.Linkname
		return nil
	case hdr.Typeflag == tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", quote(hdr.Linkname), err)
		}
		f, ok := x.files[target]
		if !ok {
			return fmt.Errorf("%w: hard link to %s, which is not a regular file extracted before it", ErrUnsafe,
				quote(hdr.Linkname))
		}
		if err := x.parents(name); err != nil {
			return err
		}
		if err := x.root.Link(target, name); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %s appears twice", ErrUnsafe, quote(name))
			}
			return x.fsErr("link", name, err)
		}
		f.Path = name
		x.files[name] = f
		return nil
	}
	return fmt.Errorf("%w: entry type %q (devices, FIFOs and other special files are refused)", ErrUnsafe, hdr.Typeflag)
}

// treeFinish sets a Tree file's mode and makes its content durable before the tree is
// published.
func treeFinish(perm fs.FileMode) func(*os.File) error {
	return func(f *os.File) error {
		if err := f.Chmod(perm); err != nil {
			return err
		}
		return f.Sync()
	}
}
