// Package untar is the agent's one safe tar extractor: every archive the agent did not write
// itself (image layers, reference data) becomes files through it, so this is the code to audit.
//
// Guarantees, whatever the archive holds:
//
//   - Confinement. Every file-system call goes through the os.Root given to New, so no entry
//     creates, changes or reads anything outside it: not through "..", an absolute name, a
//     symlink planted by an earlier entry (or an earlier layer), nor a hard link. os.Root
//     refuses to follow a symlink whose target leaves the root.
//   - Names. An entry name (or hard link target) that is empty, absolute, contains a ".."
//     component or a NUL byte, is longer than 4095 bytes (PATH_MAX) or has a component longer
//     than 255 bytes (NAME_MAX) is refused with ErrUnsafe (Layers mode reads a hard link
//     target spelt from "/" as relative to the root, as image builders write them).
//   - Bounds, both checked before the object is created. Limits.MaxBytes bounds the bytes
//     written: a regular file counts by its header size (so an over-large file is refused
//     before a byte is written), and what follows the archive's end in the stream counts too.
//     Limits.MaxEntries bounds the objects: every tar header counts (directories, links,
//     skipped entries, whiteouts, global headers), and so does every directory created
//     implicitly for an entry's path, so the single entry "d/d/d/…/d/" counts once per "d".
//   - Type flags. '\x00' (a pre-POSIX regular file) is a regular file, or a directory when its
//     name ends in "/": archive/tar's reader turns it into TypeReg or TypeDir before this
//     package sees it, and the tests check that with hand-made headers. GNU sparse files ('S')
//     are regular files of their full logical size, contiguous files ('7') regular files.
//   - A full disk (ENOSPC, or EDQUOT for a quota) gives an error matching ErrNoSpace, with the
//     bytes written so far; the caller discards the partial tree.
//   - Cancellation: ctx is checked between entries and between the 1 MiB chunks of a file.
//   - Cleanup: RemoveAll removes any tree Extract can leave, of any depth (it holds two
//     directory descriptors, never one per level) and whatever the modes of its directories.
//   - Memory is bounded by the number of entries (Tree keeps the manifest, Layers the paths of
//     the current layer), never by file sizes; zstd windows above 512 MiB are refused.
//
// Two policies, chosen by Options.Mode, differ in what a well-formed archive may do:
//
//	                        Layers (OCI image layers)            Tree (reference data)
//	existing path           replaced (a directory merges)        refused (ErrUnsafe)
//	.wh.<name>, .wh..wh..opq whiteouts, applied                   ordinary names
//	symlink target          kept as is, absolute or not (it      relative, and resolving inside
//	                        means something only in the          the tree through its own links,
//	                        container; never followed out)       at creation and at Finish
//	hard link               to any non-directory in the root     to a regular file extracted
//	                                                             before it
//	devices, FIFOs, unknown skipped (Options.OnSkip)             refused (ErrUnsafe)
//	modes                   kept (permissions, set-id, sticky);  files 0644 (0755 if executable),
//	                        directories get u+rwx when not root  directories 0755
//	owners, mtimes          owners kept when root; file mtimes   the agent's user; extraction time
//	durability              none (the bundle is scratch)         every file fsynced
//	manifest                none                                 Files and Symlinks, with sizes
//	                                                             and CRC64/NVME
//
// Not applied in either mode, on purpose: extended attributes (file capabilities would be
// pointless without capabilities, security.* labels are the host's business), device nodes
// (the runtime provides /dev) and directory times.
//
// The package decompresses (gzip, zstd) and extracts; it does not verify digests (the caller
// wraps the stream), publish trees, or log (skipped entries go to Options.OnSkip).
package untar

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// Errors callers branch on with errors.Is.
var (
	// ErrUnsafe: an entry was refused (a name or link leaving the root, a duplicate in Tree
	// mode, a device in Tree mode, a malformed entry).
	ErrUnsafe = errors.New("unsafe archive entry")
	// ErrTooLarge: the archive exceeds Limits.MaxBytes or Limits.MaxEntries.
	ErrTooLarge = errors.New("archive exceeds the bounds")
	// ErrNoSpace: the file system ran out of space (or of the user's quota) while extracting.
	ErrNoSpace = errors.New("no space left on the file system")
)

// Mode is an extraction policy (see the package comment).
type Mode int

const (
	// Tree extracts a self-contained tree to publish read-only (reference data).
	Tree Mode = iota
	// Layers applies OCI image layers, lowest first, to a root file system.
	Layers
)

func (m Mode) String() string {
	switch m {
	case Tree:
		return "tree"
	case Layers:
		return "layers"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Limits bound one Extractor, across all its Extract and WriteFile calls.
type Limits struct {
	// MaxBytes bounds the bytes written (see the package comment). Must be > 0.
	MaxBytes int64
	// MaxEntries bounds the file-system objects: headers and implicitly created directories.
	// Must be > 0.
	MaxEntries int
}

// Options configure an Extractor.
type Options struct {
	Mode   Mode
	Limits Limits
	// Reserved names (cleaned, relative) no entry may have in Tree mode, such as a manifest
	// the caller writes afterwards.
	Reserved []string
	// OnSkip, if set, is called for every entry Layers mode skips (devices, FIFOs, unknown
	// types), with its cleaned name and type flag.
	OnSkip func(name string, typeflag byte)
}

// File is one regular file extracted in Tree mode.
type File struct {
	Path      string
	Size      int64
	CRC64NVME string
}

// Symlink is one symbolic link extracted in Tree mode.
type Symlink struct {
	Path   string
	Target string
}

// Extractor extracts archives into one root. It is not safe for concurrent use.
type Extractor struct {
	root    *os.Root
	opts    Options
	chown   bool // Layers: only root may give files away
	written int64
	entries int
	skipped int

	// Tree mode.
	files map[string]File   // regular files (and hard links to them) by path
	links map[string]string // symlinks: path → target

	// Layers mode: every path the current layer created, and their ancestors. An opaque
	// whiteout removes only what lower layers put in a directory.
	touched map[string]bool
}

// chunk is the copy buffer size; ctx is checked between chunks.
const chunk = 1 << 20

// buffers holds the copy buffers (*[]byte of chunk bytes): extractors are short-lived.
var buffers = sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}

// New returns an Extractor writing into root with opts.
func New(root *os.Root, opts Options) (*Extractor, error) {
	var errs []error
	if root == nil {
		errs = append(errs, errors.New("no root"))
	}
	if opts.Mode != Tree && opts.Mode != Layers {
		errs = append(errs, fmt.Errorf("unknown %v", opts.Mode))
	}
	if opts.Limits.MaxBytes <= 0 {
		errs = append(errs, fmt.Errorf("MaxBytes must be > 0, got %d", opts.Limits.MaxBytes))
	}
	if opts.Limits.MaxEntries <= 0 {
		errs = append(errs, fmt.Errorf("MaxEntries must be > 0, got %d", opts.Limits.MaxEntries))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("untar: %w", err)
	}
	x := &Extractor{root: root, opts: opts}
	switch opts.Mode {
	case Tree:
		x.files, x.links = map[string]File{}, map[string]string{}
	case Layers:
		x.chown = os.Geteuid() == 0
	}
	return x, nil
}

// Written is the number of bytes counted against Limits.MaxBytes so far.
func (x *Extractor) Written() int64 { return x.written }

// Entries is the number of objects counted against Limits.MaxEntries so far.
func (x *Extractor) Entries() int { return x.entries }

// Skipped is the number of entries Layers mode skipped.
func (x *Extractor) Skipped() int { return x.skipped }

// Extract reads one uncompressed tar stream from r and applies it (in Layers mode: one layer).
// After the archive's end it reads r to its end (so a compressed stream's own trailer is
// checked), counting those bytes against Limits.MaxBytes. On error the root holds a partial
// tree, confined to it, that the caller must discard.
func (x *Extractor) Extract(ctx context.Context, r io.Reader) error {
	if x.opts.Mode == Layers {
		x.touched = map[string]bool{}
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if err := x.count(1); err != nil {
			return err
		}
		if err := x.entry(ctx, hdr, tr); err != nil {
			return fmt.Errorf("entry %s: %w", quote(hdr.Name), err)
		}
	}
	n, err := io.Copy(io.Discard, io.LimitReader(r, x.opts.Limits.MaxBytes-x.written+1))
	if err != nil {
		return fmt.Errorf("read after the archive's end: %w", err)
	}
	if err := x.addBytes(n); err != nil {
		return fmt.Errorf("after the archive's end: %w", err)
	}
	return nil
}

// WriteFile writes one regular file name (mode perm) from r, as an archive entry would be: it
// counts as one entry, its bytes are bounded, and in Tree mode it is listed in Files. It is
// how a single compressed file (not an archive) is unpacked.
func (x *Extractor) WriteFile(ctx context.Context, name string, r io.Reader, perm fs.FileMode) error {
	if err := x.count(1); err != nil {
		return err
	}
	clean, err := cleanName(name)
	if err != nil {
		return err
	}
	if clean == "." {
		return fmt.Errorf("%w: a file named like the root", ErrUnsafe)
	}
	if err := x.reserved(clean); err != nil {
		return err
	}
	if err := x.parents(clean); err != nil {
		return err
	}
	finish := treeFinish(perm)
	if x.opts.Mode == Layers {
		x.touch(clean)
		if err := x.clear(clean, false); err != nil {
			return err
		}
		finish = func(f *os.File) error { return f.Chmod(perm) }
	}
	return x.writeFile(ctx, clean, r, -1, finish)
}

// Finish completes a Tree extraction: every symlink is resolved again in the complete tree (a
// later link can redirect a component of an earlier one). Layers mode has nothing to do.
func (x *Extractor) Finish() error {
	if x.opts.Mode != Tree {
		return nil
	}
	names := make([]string, 0, len(x.links))
	for n := range x.links {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := x.resolveInside(parentOf(n) + "/" + x.links[n]); err != nil {
			return fmt.Errorf("symlink %s -> %s: %w", quote(n), quote(x.links[n]), err)
		}
	}
	return nil
}

// Files returns the regular files extracted in Tree mode, sorted by path.
func (x *Extractor) Files() []File {
	out := make([]File, 0, len(x.files))
	for _, f := range x.files {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// Symlinks returns the symlinks extracted in Tree mode, sorted by path.
func (x *Extractor) Symlinks() []Symlink {
	out := make([]Symlink, 0, len(x.links))
	for n, t := range x.links {
		out = append(out, Symlink{Path: n, Target: t})
	}
	slices.SortFunc(out, func(a, b Symlink) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// count adds n objects, refusing to go past Limits.MaxEntries.
func (x *Extractor) count(n int) error {
	if x.entries+n > x.opts.Limits.MaxEntries {
		return fmt.Errorf("%w: more than %d files, directories and links", ErrTooLarge, x.opts.Limits.MaxEntries)
	}
	x.entries += n
	return nil
}

// reserve checks that size more bytes fit, before anything is written.
func (x *Extractor) reserve(size int64) error {
	if size < 0 || size > x.opts.Limits.MaxBytes-x.written {
		return fmt.Errorf("%w: more than %s of data", ErrTooLarge, Size(x.opts.Limits.MaxBytes))
	}
	return nil
}

// addBytes counts n bytes that were written.
func (x *Extractor) addBytes(n int64) error {
	x.written += n
	if x.written > x.opts.Limits.MaxBytes {
		return fmt.Errorf("%w: more than %s of data", ErrTooLarge, Size(x.opts.Limits.MaxBytes))
	}
	return nil
}

func (x *Extractor) reserved(name string) error {
	if x.opts.Mode == Tree && slices.Contains(x.opts.Reserved, name) {
		return fmt.Errorf("%w: the name %s is reserved", ErrUnsafe, name)
	}
	return nil
}

// fsErr wraps a file-system error of op on name, marking a full disk or quota with ErrNoSpace.
func (x *Extractor) fsErr(op, name string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%s %s: %w after %s written: %w", op, quote(name), ErrNoSpace, Size(x.written), err)
	}
	return fmt.Errorf("%s %s: %w", op, quote(name), err)
}

// Size formats a byte count for people: "512 B", "1.5 KiB", "256 GiB".
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), -1
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	s := fmt.Sprintf("%.1f", f)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTPE"[i]) + "iB"
}

// quote quotes a name for an error message, shortened: names can be a mebibyte long.
func quote(name string) string {
	const max = 160
	if len(name) > max {
		return fmt.Sprintf("%q… (%d bytes)", name[:max], len(name))
	}
	return fmt.Sprintf("%q", name)
}
