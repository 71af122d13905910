package container

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// DefaultMaxUnpackBytes bounds the total size of the regular files unpacked for one container
// when OCIConfig.MaxUnpackBytes is 0.
const DefaultMaxUnpackBytes int64 = 20 << 30

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// unpacker applies image layers, lowest first, to a root file system. Every file-system call
// goes through os.Root, so no entry (a "../" name, a hard link, or a file written through a
// symlink planted by an earlier entry) can reach outside the root: os.Root refuses to follow
// a symlink that is absolute or climbs out. Symlinks are created as they are in the layer;
// they only mean something inside the container.
//
// Not applied, on purpose: device nodes and FIFOs (skipped with a log line: the runtime
// provides /dev), extended attributes (file capabilities would be pointless without
// capabilities, and security.* labels are the host's business), and directory times.
type unpacker struct {
	root    *os.Root
	limit   int64 // bound on the bytes of regular files
	written int64
	chown   bool // only root may give files away
	log     *slog.Logger

	// touched holds, for the layer being applied, every path it created and their
	// ancestors: an opaque whiteout removes only what lower layers put in a directory.
	touched map[string]bool
	skipped int
}

func newUnpacker(root *os.Root, limit int64, log *slog.Logger) *unpacker {
	return &unpacker{root: root, limit: limit, chown: os.Geteuid() == 0, log: log}
}

// layerBlob opens a layer blob for apply.
type layerBlob struct {
	digest v1.Hash
	size   int64
	open   func() (io.ReadCloser, error)
}

// applyBlob verifies and applies one compressed (gzip, zstd) or plain tar layer blob. The
// digest is checked when the blob has been read to its end; if it does not match, the error
// wraps ErrDigestMismatch and the caller must discard the root (entries were confined to it).
func (u *unpacker) applyBlob(ctx context.Context, b layerBlob) error {
	rc, err := b.open()
	if err != nil {
		return fmt.Errorf("open layer %s: %w", b.digest, err)
	}
	defer rc.Close()
	vr := newVerifyingReader(rc, b.digest, b.size)
	tr, closeTar, err := decompress(vr)
	if err != nil {
		return fmt.Errorf("layer %s: %w", b.digest, err)
	}
	applyErr := u.apply(ctx, tar.NewReader(tr))
	closeTar()
	// A digest mismatch explains any other failure (a tampered tar is often also malformed),
	// so it is checked first.
	if err := vr.check(); err != nil {
		return fmt.Errorf("layer %s: %w", b.digest, err)
	}
	if applyErr != nil {
		return fmt.Errorf("layer %s: %w", b.digest, applyErr)
	}
	return nil
}

// decompress detects the compression from the magic bytes (media types are not trusted to be
// right) and returns the tar stream.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	default:
		return br, func() {}, nil
	}
}

// apply applies one uncompressed layer.
func (u *unpacker) apply(ctx context.Context, tr *tar.Reader) error {
	u.touched = map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
}

// cleanName turns a tar entry name into a path relative to the root, refusing absolute names
// and any ".." component.
func cleanName(n string) (string, error) {
	if n == "" || strings.HasPrefix(n, "/") || strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("%w: name %q", ErrUnsafeLayer, n)
	}
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: name %q", ErrUnsafeLayer, n)
		}
	}
	return path.Clean(n), nil
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil // the root itself keeps the mode the runtime gave it
	}
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}
	if dir != "." {
		// Layers may omit parent entries. MkdirAll follows symlinks only inside the root.
		if err := u.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("%w: parent of %q: %w", ErrUnsafeLayer, hdr.Name, err)
		}
	}
	u.touch(name)

	// An entry replaces what lower layers had at its path, except that a directory merges
	// into a directory. Lstat does not follow a final symlink: a symlink is replaced, never
	// written through.
	if fi, err := u.root.Lstat(name); err == nil {
		if !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := u.root.RemoveAll(name); err != nil {
				return fmt.Errorf("replace %q: %w", name, err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q: %w", ErrUnsafeLayer, hdr.Name, err)
	}

	mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("mkdir %q: %w", name, err)
		}
		return u.setAttrs(name, hdr, mode, false)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if hdr.Size < 0 || u.written+hdr.Size > u.limit {
			return fmt.Errorf("%q: %w (limit %d bytes)", name, ErrTooLarge, u.limit)
		}
		u.written += hdr.Size
		// O_EXCL: the path was just cleared, so this can never open an existing file or
		// follow a link.
		f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("create %q: %w", name, err)
		}
		if _, err := io.CopyN(f, r, hdr.Size); err != nil {
			f.Close()
			return fmt.Errorf("write %q: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write %q: %w", name, err)
		}
		if err := u.setAttrs(name, hdr, mode, false); err != nil {
			return err
		}
		if err := u.root.Chtimes(name, hdr.ModTime, hdr.ModTime); err != nil {
			return fmt.Errorf("chtimes %q: %w", name, err)
		}
		return nil
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("%w: symlink %q has no target", ErrUnsafeLayer, name)
		}
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return fmt.Errorf("symlink %q: %w", name, err)
		}
		return u.setAttrs(name, hdr, 0, true)
	case tar.TypeLink:
		// A hard link names another member of the archive; some writers spell it from "/".
		// os.Root resolves it inside the root either way.
		target, err := cleanName(strings.TrimLeft(hdr.Linkname, "/"))
		if err != nil || target == "." {
			return fmt.Errorf("%w: hard link %q -> %q", ErrUnsafeLayer, name, hdr.Linkname)
		}
		if err := u.root.Link(target, name); err != nil {
			return fmt.Errorf("%w: hard link %q -> %q: %w", ErrUnsafeLayer, name, hdr.Linkname, err)
		}
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		u.skipped++
		u.log.Info("unpack: skipped device or fifo entry", "path", name, "type", string(hdr.Typeflag))
		return nil
	case tar.TypeXGlobalHeader:
		return nil
	default:
		u.skipped++
		u.log.Info("unpack: skipped entry of unknown type", "path", name, "type", string(hdr.Typeflag))
		return nil
	}
}

// setAttrs applies ownership then mode (chown clears set-id bits, so it goes first).
// Symlinks get ownership only: chmod would follow them.
func (u *unpacker) setAttrs(name string, hdr *tar.Header, mode fs.FileMode, symlink bool) error {
	if u.chown {
		if err := u.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown %q: %w", name, err)
		}
	}
	if symlink {
		return nil
	}
	if err := u.root.Chmod(name, mode); err != nil {
		return fmt.Errorf("chmod %q: %w", name, err)
	}
	return nil
}

// touch marks name and its ancestors as created by the current layer.
func (u *unpacker) touch(name string) {
	for p := name; p != "." && !u.touched[p]; p = path.Dir(p) {
		u.touched[p] = true
	}
}

// whiteout applies ".wh.<name>" (delete name from lower layers) or ".wh..wh..opq" (the
// directory hides everything lower layers put in it).
func (u *unpacker) whiteout(dir, base string) error {
	if base == whiteoutOpaque {
		if dir != "." {
			if err := u.root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("%w: opaque %q: %w", ErrUnsafeLayer, dir, err)
			}
		}
		u.touch(dir)
		return u.removeLower(dir)
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." || strings.HasPrefix(target, whiteoutPrefix) {
		return fmt.Errorf("%w: whiteout %q", ErrUnsafeLayer, path.Join(dir, base))
	}
	if err := u.root.RemoveAll(path.Join(dir, target)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: whiteout %q: %w", ErrUnsafeLayer, path.Join(dir, base), err)
	}
	return nil
}

// removeLower removes every entry under dir that the current layer did not create.
func (u *unpacker) removeLower(dir string) error {
	f, err := u.root.Open(dir)
	if err != nil {
		return fmt.Errorf("%w: opaque %q: %w", ErrUnsafeLayer, dir, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("opaque %q: %w", dir, err)
	}
	for _, n := range names {
		p := path.Join(dir, n)
		if !u.touched[p] {
			if err := u.root.RemoveAll(p); err != nil {
				return fmt.Errorf("opaque %q: %w", dir, err)
			}
			continue
		}
		if fi, err := u.root.Lstat(p); err == nil && fi.IsDir() {
			if err := u.removeLower(p); err != nil {
				return err
			}
		}
	}
	return nil
}
