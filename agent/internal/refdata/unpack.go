package refdata

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kbase/cts/shared/checksum"
)

// maxLinkHops bounds the symlinks followed while resolving one link (as the kernel's 40).
const maxLinkHops = 40

// extractor writes an archive into a root, enforcing the package's safety rules.
type extractor struct {
	root     *os.Root
	maxBytes int64
	maxFiles int
	written  int64
	entries  int
	files    map[string]File   // regular files (and hard links) by path
	links    map[string]string // symlinks: path → target
	buf      []byte
}

func newExtractor(root *os.Root, maxBytes int64, maxFiles int) *extractor {
	return &extractor{root: root, maxBytes: maxBytes, maxFiles: maxFiles,
		files: map[string]File{}, links: map[string]string{}, buf: make([]byte, 1<<20)}
}

// unpack reads the archive at file in format fm; single is the output name of a single
// compressed file.
func (x *extractor) unpack(ctx context.Context, file string, fm format, single string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReaderSize(f, 1<<20)
	switch fm {
	case fmtTarGz, fmtGz:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		r = zr
	case fmtTarZst, fmtZst:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr.IOReadCloser()
	}
	if fm == fmtGz || fm == fmtZst {
		x.entries++
		return x.writeFile(ctx, path.Base(single), r, 0o644)
	}
	if err := x.untar(ctx, tar.NewReader(r)); err != nil {
		return err
	}
	// Read the compressed stream to its end: its own checksum trailer (gzip's CRC-32, zstd's
	// xxhash) is only verified there. Bytes after the tar's end count against the bound.
	n, err := io.Copy(io.Discard, io.LimitReader(r, x.maxBytes-x.written+1))
	if err != nil {
		return fmt.Errorf("after the tar end: %w", err)
	}
	if x.written+n > x.maxBytes {
		return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, x.maxBytes)
	}
	return x.checkLinks()
}

func (x *extractor) untar(ctx context.Context, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		x.entries++
		if x.entries > x.maxFiles {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, x.maxFiles)
		}
		if err := x.entry(ctx, hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
}

// cleanName validates an entry name: relative, without "..", not the manifest. "" means the
// root itself.
func cleanName(n string) (string, error) {
	if n == "" || strings.HasPrefix(n, "/") || strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("%w: absolute or empty path", ErrUnsafe)
	}
	for _, el := range strings.Split(n, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: path contains \"..\"", ErrUnsafe)
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", nil
	}
	if c == ManifestName {
		return "", fmt.Errorf("%w: the name %s is reserved for the manifest", ErrUnsafe, ManifestName)
	}
	return c, nil
}

func (x *extractor) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if name == "" {
			return nil
		}
		if err := x.root.MkdirAll(name, 0o755); err != nil {
			return err
		}
		return x.root.Chmod(name, 0o755)
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives still use '\x00'
		if name == "" {
			return fmt.Errorf("%w: a file named like the root", ErrUnsafe)
		}
		return x.writeFile(ctx, name, r, fs.FileMode(hdr.Mode)&0o755|0o644)
	case tar.TypeSymlink:
		if name == "" {
			return fmt.Errorf("%w: a link named like the root", ErrUnsafe)
		}
		if hdr.Linkname == "" || path.IsAbs(hdr.Linkname) {
			return fmt.Errorf("%w: symlink to absolute or empty target %q", ErrUnsafe, hdr.Linkname)
		}
		if err := x.parent(name); err != nil {
			return err
		}
		// Not path.Join: cleaning "x/y/.." lexically would skip the link y may be.
		if err := x.resolveInside(path.Dir(name) + "/" + hdr.Linkname); err != nil {
			return fmt.Errorf("symlink to %q: %w", hdr.Linkname, err)
		}
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		x.links[name] = hdr.Linkname
		return nil
	case tar.TypeLink:
		if name == "" {
			return fmt.Errorf("%w: a link named like the root", ErrUnsafe)
		}
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		f, ok := x.files[target]
		if !ok {
			return fmt.Errorf("%w: hard link to %q, which is not a file unpacked before it", ErrUnsafe, hdr.Linkname)
		}
		if err := x.parent(name); err != nil {
			return err
		}
		if err := x.root.Link(target, name); err != nil {
			return err
		}
		f.Path = name
		x.files[name] = f
		return nil
	}
	return fmt.Errorf("%w: entry type %q (devices, FIFOs and other special files are refused)", ErrUnsafe, hdr.Typeflag)
}

// parent makes the parent directory of name; it must resolve inside the root.
func (x *extractor) parent(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	if err := x.resolveInside(dir); err != nil {
		return err
	}
	return x.root.MkdirAll(dir, 0o755)
}

// writeFile creates the regular file name from r, bounded by maxBytes, computing its CRC.
// An existing name (a duplicate entry, or a link planted under the name) is refused.
func (x *extractor) writeFile(ctx context.Context, name string, r io.Reader, mode fs.FileMode) error {
	if err := x.parent(name); err != nil {
		return err
	}
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s appears twice", ErrUnsafe, name)
		}
		return err
	}
	crc := checksum.New()
	var size int64
	err = func() error {
		for {
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
			n, rerr := r.Read(x.buf)
			if n > 0 {
				size += int64(n)
				x.written += int64(n)
				if x.written > x.maxBytes {
					return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, x.maxBytes)
				}
				crc.Write(x.buf[:n])
				if _, err := f.Write(x.buf[:n]); err != nil {
					return err
				}
			}
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			if rerr != nil {
				return rerr
			}
		}
	}()
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	x.files[name] = File{Path: name, Size: size, CRC64NVME: checksum.Encode(crc.Sum64())}
	return nil
}

// resolveInside resolves p (relative to the root, possibly through symlinks of the tree) and
// fails with ErrUnsafe when that leaves the root. Components that do not exist (yet) are taken
// literally, so a dangling link stays acceptable as long as its path stays inside.
func (x *extractor) resolveInside(p string) error {
	var resolved []string
	todo := strings.Split(p, "/")
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(resolved) == 0 {
				return fmt.Errorf("%w: %q leads out of the tree", ErrUnsafe, p)
			}
			resolved = resolved[:len(resolved)-1]
			continue
		}
		cur := path.Join(append(slices.Clone(resolved), c)...)
		fi, err := x.root.Lstat(cur)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			resolved = append(resolved, c)
			continue
		}
		hops++
		if hops > maxLinkHops {
			return fmt.Errorf("%w: too many links resolving %q", ErrUnsafe, p)
		}
		t, err := x.root.Readlink(cur)
		if err != nil {
			return err
		}
		if path.IsAbs(t) {
			return fmt.Errorf("%w: %q goes through an absolute link", ErrUnsafe, p)
		}
		todo = append(strings.Split(t, "/"), todo...)
	}
	return nil
}

// checkLinks checks every symlink of the complete tree: a later link can redirect a
// component of an earlier one.
func (x *extractor) checkLinks() error {
	for name, target := range x.links {
		if err := x.resolveInside(path.Dir(name) + "/" + target); err != nil {
			return fmt.Errorf("symlink %s -> %s: %w", name, target, err)
		}
	}
	return nil
}

// manifest returns the files and links, sorted by path.
func (x *extractor) manifest() ([]File, []Symlink) {
	var links []Symlink
	for n, t := range x.links {
		links = append(links, Symlink{Path: n, Target: t})
	}
	slices.SortFunc(links, func(a, b Symlink) int { return strings.Compare(a.Path, b.Path) })
	return sortedFiles(x.files), links
}
