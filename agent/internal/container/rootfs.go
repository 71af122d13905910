package container

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/kbase/cts/agent/internal/untar"
)

// Unpacked images. The oci runtime unpacks an image once per node, not once per container:
//
//	<CacheDir>/rootfs/<image digest hex>/tree      the layers, applied (read-only by convention)
//	<CacheDir>/rootfs/<image digest hex>/manifest  what the tree held when it was unpacked
//	<CacheDir>/rootfs/<image digest hex>/use       the in-use marker (a flock, see below)
//	<CacheDir>/locks/rootfs-<image digest hex>     held shared to check and mount a tree,
//	                                               exclusively to build or replace it
//
// Building. Under the exclusive lock, the layers are unpacked into
// <CacheDir>/rootfs/<hex>.tmp<random>/tree with every blob verified against its digest as it
// is read (as a per-container unpack did), the manifest is written, the file system is synced
// (syncfs), and the directory is renamed to <hex>: a tree under its final name is complete
// and durable, and an agent that checks or mounts a tree holds the lock shared, so it waits
// for a build in progress and never sees half a tree. A failed build leaves a .tmp directory
// that PruneImages sweeps.
//
// Using. Each container's root (<bundle>/rootfs) is an overlayfs whose only lower layer is the
// tree (named by an open descriptor, so a tree replaced meanwhile cannot slip in) and whose
// upper and work directories are in the bundle: runc creates the container's mount points
// (its /proc, /dev, the job's mounts, the working directory) in the bundle's upper directory,
// never in the shared tree, and then makes the root read-only (root.readonly), as it did for
// a private copy. Where overlayfs cannot be mounted (no privilege, a file system it does not
// take), the runtime says so once and unpacks a private copy per container, as before.
//
// Guarding. A tree is compared with its manifest each time a container is about to use it:
// every entry's path, type and mode, owner, size, inode, modification and change time (ctime).
// Any change made through the file system after unpacking (a write, chmod, chown, rename,
// link, unlink, a file replaced by another with the same name, size and mtime) changes a
// ctime or the list, and ctime cannot be set back by any system call. A tree that no longer
// matches is not used: it is renamed aside (<hex>.old<random>), unpacked again from the
// verified blobs, and the agent logs which path changed. What this does not catch: someone
// who rewrites the manifest to match a changed tree (anyone who can write the cache can as
// well replace runc), and a disk that silently corrupts file contents without any metadata
// change (the layer digests were what caught that for a per-container unpack; a file system
// with checksums catches it here).
//
// In use. Every container holds a shared flock on its tree's use file from before its root
// is mounted until it is unmounted. A tree is removed (PruneImages: its image was pruned, or
// it was set aside, or it is a failed build) only by whoever takes that lock exclusively,
// i.e. never while a container runs on it. Image pruning itself keeps its rule (never an image
// a live agent pulled), and counts the trees in the cache's size.

// treeSubdir is the directory under CacheDir holding the unpacked images.
const treeSubdir = "rootfs"

// treeManifestHeader starts a tree's manifest, followed by its size line and its listing.
const treeManifestHeader = "cts-rootfs v1\n"

// treeTmpMinAge is how old a .tmp directory must be before a sweep takes its free use lock for
// a failed build's (the builder takes the lock right after creating the directory).
var treeTmpMinAge = time.Minute

// treeDir is where the unpacked tree of image h lives.
func (c *cache) treeDir(h v1.Hash) string { return filepath.Join(c.dir, treeSubdir, h.Hex) }

// treeLockPath is the build/check lock of image h's tree.
func (c *cache) treeLockPath(h v1.Hash) string {
	return filepath.Join(c.dir, "locks", treeSubdir+"-"+h.Hex)
}

// sharedTree returns an open descriptor of image img's verified tree, building it (or
// replacing a tree that no longer matches its manifest) first, and marks the tree in use until
// release is called. The caller closes tree once it has mounted it. A layer that fails its
// digest check is returned as bad (with an error wrapping ErrDigestMismatch).
func (o *OCI) sharedTree(ctx context.Context, img v1.Hash, layers []v1.Descriptor, log *slog.Logger) (tree *os.File, release func(), bad *v1.Hash, err error) {
	dir := o.cache.treeDir(img)
	lock := o.cache.treeLockPath(img)
	unlock, err := lockFile(ctx, lock, syscall.LOCK_SH)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("unpacked image: %w", err)
	}
	if diff, err := checkTree(dir); err == nil && diff == "" {
		tree, release, err := holdTree(dir)
		unlock()
		return tree, release, nil, err
	}
	unlock()

	unlock, err = lockFile(ctx, lock, syscall.LOCK_EX)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("unpacked image: %w", err)
	}
	defer unlock()
	diff, err := checkTree(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, nil, nil, fmt.Errorf("unpacked image %s: %w", img, err)
	case diff == "":
		// Another agent built it while this one waited.
		tree, release, err := holdTree(dir)
		return tree, release, nil, err
	default:
		log.Warn("the unpacked image on this node changed after it was unpacked: it is set aside and unpacked again from its verified layers",
			"image_digest", img.String(), "tree", filepath.Join(dir, "tree"), "change", diff)
		if err := o.setTreeAside(dir); err != nil {
			return nil, nil, nil, fmt.Errorf("unpacked image %s: %w", img, err)
		}
	}
	if bad, err := o.buildTree(ctx, img, layers, log); err != nil {
		return nil, nil, bad, err
	}
	tree, release, err = holdTree(dir)
	return tree, release, nil, err
}

// holdTree takes a shared lock on dir's use file (kept until release) and opens its tree.
func holdTree(dir string) (*os.File, func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "use"), os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("unpacked image: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("unpacked image: lock %s: %w", f.Name(), err)
	}
	tree, err := os.Open(filepath.Join(dir, "tree"))
	if err != nil {
		unlockClose(f)
		return nil, nil, fmt.Errorf("unpacked image: %w", err)
	}
	return tree, func() { unlockClose(f) }, nil
}

// buildTree unpacks the layers of image img into its tree directory (see the comment at the
// top). The caller holds the tree's lock exclusively and the directory does not exist.
func (o *OCI) buildTree(ctx context.Context, img v1.Hash, layers []v1.Descriptor, log *slog.Logger) (bad *v1.Hash, err error) {
	parent := filepath.Join(o.cache.dir, treeSubdir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, img.Hex+".tmp")
	if err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	// The build holds its directory's use lock: a sweep removes a .tmp directory only once
	// its builder is gone.
	use, err := os.OpenFile(filepath.Join(tmp, "use"), os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		err = syscall.Flock(int(use.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		if use != nil {
			use.Close()
		}
		_ = untar.RemoveAll(tmp)
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := untar.RemoveAll(tmp); rerr != nil {
				log.Warn("remove a failed unpack", "dir", tmp, "error", rerr)
			}
		}
		unlockClose(use)
	}()
	start := time.Now()
	tree := filepath.Join(tmp, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	root, err := os.OpenRoot(tree)
	if err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	bad, err = o.unpackLayers(ctx, root, layers, log)
	root.Close()
	if err != nil {
		return bad, err
	}
	listing, size, err := listTree(tree)
	if err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	var m bytes.Buffer
	m.WriteString(treeManifestHeader)
	fmt.Fprintf(&m, "bytes %d\n", size)
	m.Write(listing)
	if err := os.WriteFile(filepath.Join(tmp, "manifest"), m.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	if err := syncFS(tmp); err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	dir := o.cache.treeDir(img)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	if err := syncDir(parent); err != nil {
		return nil, fmt.Errorf("unpack image: %w", err)
	}
	log.Debug("image unpacked into the node's cache", "image_digest", img.String(), "bytes", size, "seconds", time.Since(start).Seconds())
	return nil, nil
}

// unpackLayers applies the image's layers, lowest first, into root, verifying each blob
// against its digest; a layer that fails the check is returned as bad.
func (o *OCI) unpackLayers(ctx context.Context, root *os.Root, layers []v1.Descriptor, log *slog.Logger) (bad *v1.Hash, err error) {
	u := newUnpacker(root, o.cfg.MaxUnpackBytes, log)
	for _, l := range layers {
		blob := o.cache.blobPath(l.Digest)
		err := u.applyBlob(ctx, layerBlob{digest: l.Digest, size: l.Size, open: func() (io.ReadCloser, error) { return os.Open(blob) }})
		if errors.Is(err, ErrDigestMismatch) {
			return &l.Digest, fmt.Errorf("unpack: %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("unpack: %w", err)
		}
	}
	return nil, nil
}

// setTreeAside renames a tree that no longer matches its manifest out of the way, and removes
// it at once when no container uses it (PruneImages does later otherwise).
func (o *OCI) setTreeAside(dir string) error {
	aside := dir + ".old" + randomSuffix()
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("set aside %s: %w", dir, err)
	}
	if release, ok := tryExclusive(filepath.Join(aside, "use")); ok {
		err := untar.RemoveAll(aside)
		release()
		if err != nil {
			o.log.Warn("remove an unpacked image set aside", "dir", aside, "error", err)
		}
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// checkTree compares the tree in dir with its manifest. It returns "" when they match, a
// description of the first difference otherwise, and an error wrapping fs.ErrNotExist when
// there is no tree.
func checkTree(dir string) (diff string, err error) {
	want, err := os.ReadFile(filepath.Join(dir, "manifest"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr == nil {
			return "the manifest is missing", nil
		}
		return "", err
	}
	if err != nil {
		return "", err
	}
	rest, ok := bytes.CutPrefix(want, []byte(treeManifestHeader))
	if !ok {
		return "the manifest is not one this agent wrote", nil
	}
	if _, after, ok := bytes.Cut(rest, []byte("\n")); ok {
		rest = after
	} else {
		return "the manifest is truncated", nil
	}
	got, _, err := listTree(filepath.Join(dir, "tree"))
	if err != nil {
		return "the tree cannot be read: " + err.Error(), nil
	}
	if bytes.Equal(got, rest) {
		return "", nil
	}
	return firstDifference(rest, got), nil
}

// firstDifference describes the first line where two listings differ.
func firstDifference(want, got []byte) string {
	ws, gs := bufio.NewScanner(bytes.NewReader(want)), bufio.NewScanner(bytes.NewReader(got))
	ws.Buffer(nil, 1<<20)
	gs.Buffer(nil, 1<<20)
	for {
		wok, gok := ws.Scan(), gs.Scan()
		switch {
		case !wok && !gok:
			return "the listing differs"
		case !gok:
			return "missing: " + entryPath(ws.Text())
		case !wok:
			return "added: " + entryPath(gs.Text())
		case ws.Text() != gs.Text():
			wp, gp := entryPath(ws.Text()), entryPath(gs.Text())
			switch {
			case wp == gp:
				return "changed: " + wp + " (was " + entryAttrs(ws.Text()) + ", now " + entryAttrs(gs.Text()) + ")"
			case wp < gp:
				return "missing: " + wp
			default:
				return "added: " + gp
			}
		}
	}
}

// A listing line is "<ino> <mode> <uid> <gid> <size> <mtime ns> <ctime ns> <quoted path>".
const listingFields = 7

func entryPath(line string) string {
	f := strings.SplitN(line, " ", listingFields+1)
	if len(f) <= listingFields {
		return line
	}
	if p, err := strconv.Unquote(f[listingFields]); err == nil {
		return p
	}
	return f[listingFields]
}

func entryAttrs(line string) string {
	f := strings.SplitN(line, " ", listingFields+1)
	if len(f) <= listingFields {
		return line
	}
	return fmt.Sprintf("inode %s mode %s owner %s:%s size %s mtime %s ctime %s", f[0], f[1], f[2], f[3], f[4], f[5], f[6])
}

// listTree lists every entry of the tree at root in lexical order, one line each (see
// listingFields), and sums the disk space of its distinct files.
func listTree(root string) (listing []byte, size int64, err error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(fd)
	l := treeLister{root: root, seen: map[uint64]bool{}}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, &fs.PathError{Op: "fstat", Path: root, Err: err}
	}
	l.add(&st, ".")
	if err := l.walk(fd, ""); err != nil {
		return nil, 0, err
	}
	return l.buf, l.size, nil
}

// treeLister builds a tree's listing: each folder's entries in name order, a folder's
// entries right after it (the order of filepath.WalkDir). It stats each entry relative to
// its folder's descriptor (fstatat), so no path is resolved again from the root and no
// symbolic link is followed; a line costs a few appends, not a formatted print.
type treeLister struct {
	root string
	buf  []byte
	size int64
	seen map[uint64]bool // inodes counted in size (hard links count once)
}

func (l *treeLister) add(st *unix.Stat_t, rel string) {
	if !l.seen[st.Ino] {
		l.seen[st.Ino] = true
		l.size += st.Blocks * 512
	}
	b := strconv.AppendUint(l.buf, st.Ino, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(st.Mode), 8)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(st.Uid), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(st.Gid), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, st.Size, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, st.Mtim.Nano(), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, st.Ctim.Nano(), 10)
	b = append(b, ' ')
	b = strconv.AppendQuote(b, rel)
	l.buf = append(b, '\n')
}

// walk lists the entries of the folder open as dirfd, whose path below the root is rel.
func (l *treeLister) walk(dirfd int, rel string) error {
	dup, err := unix.Dup(dirfd)
	if err != nil {
		return &fs.PathError{Op: "dup", Path: filepath.Join(l.root, rel), Err: err}
	}
	f := os.NewFile(uintptr(dup), filepath.Join(l.root, rel))
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	slices.Sort(names)
	var st unix.Stat_t
	for _, name := range names {
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "lstat", Path: filepath.Join(l.root, rel, name), Err: err}
		}
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		l.add(&st, p)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		sub, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: filepath.Join(l.root, p), Err: err}
		}
		err = l.walk(sub, p)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

// treeBytes is the disk space a tree's manifest records (0 when unknown).
func treeBytes(dir string) int64 {
	f, err := os.Open(filepath.Join(dir, "manifest"))
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	if _, err := fmt.Fscanf(f, strings.TrimSuffix(treeManifestHeader, "\n")+"\nbytes %d\n", &n); err != nil {
		return 0
	}
	return n
}

// syncFS flushes the file system holding dir (every file just unpacked) to the disk.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// mountOverlay mounts <bundle>/rootfs as an overlay of the tree (an open directory) with its
// upper and work directories in the bundle. Directories are passed as /proc/self/fd paths:
// the tree mounted is the one verified, and no path needs escaping.
func mountOverlay(tree *os.File, bundle string) error {
	target := filepath.Join(bundle, "rootfs")
	var fds []*os.File
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	for _, d := range []string{"upper", "work"} {
		p := filepath.Join(bundle, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("overlay: %w", err)
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("overlay: %w", err)
		}
		fds = append(fds, f)
	}
	opts := fmt.Sprintf("lowerdir=/proc/self/fd/%d,upperdir=/proc/self/fd/%d,workdir=/proc/self/fd/%d", tree.Fd(), fds[0].Fd(), fds[1].Fd())
	// volatile: the upper directory is scratch, so the overlay need not sync it (an unmount
	// would otherwise sync the whole upper file system). Kernels before 5.10 refuse it.
	err := unix.Mount("overlay", target, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts+",volatile")
	if errors.Is(err, unix.EINVAL) {
		err = unix.Mount("overlay", target, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts)
	}
	if err != nil {
		return fmt.Errorf("mount an overlay at %s: %w", target, err)
	}
	return nil
}

// unmountRootfs unmounts the overlay at <bundle>/rootfs, if one is mounted there.
func unmountRootfs(bundle string) error {
	target := filepath.Join(bundle, "rootfs")
	err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	}
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil // EINVAL: not a mount point
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}

// removeBundle unmounts a bundle's root (when it is an overlay) and removes the bundle.
// Removing through a mounted overlay would only fill its upper directory with whiteouts and
// then fail.
func removeBundle(bundle string) error {
	if err := unmountRootfs(bundle); err != nil {
		return err
	}
	return untar.RemoveAll(bundle)
}

// sweepTrees removes the trees under <CacheDir>/rootfs that no kept image needs (keep holds
// the image digests' hex), the trees set aside, and failed builds, each only when no
// container uses it (its use lock can be taken exclusively) and no agent is checking or
// building it. It returns the bytes freed.
func (o *OCI) sweepTrees(keep map[string]bool) (int64, error) {
	parent := filepath.Join(o.cache.dir, treeSubdir)
	entries, err := os.ReadDir(parent)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sweep unpacked images: %w", err)
	}
	var freed int64
	var errs []error
	for _, e := range entries {
		name := e.Name()
		dir := filepath.Join(parent, name)
		hexName, kind, _ := strings.Cut(name, ".")
		final := kind == ""
		if final && keep[hexName] {
			continue
		}
		if strings.HasPrefix(kind, "tmp") {
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < treeTmpMinAge {
				continue
			}
		}
		var releases []func()
		held := func() bool {
			if final {
				// No agent checks or builds this tree meanwhile.
				gate, ok := tryLock(o.cache.treeLockPath(v1.Hash{Algorithm: "sha256", Hex: hexName}))
				if !ok {
					return false
				}
				releases = append(releases, gate)
			}
			// No container runs on it (a failed build may have died before making its use file).
			use, ok := tryExclusive(filepath.Join(dir, "use"))
			if ok {
				releases = append(releases, use)
				return true
			}
			_, err := os.Stat(filepath.Join(dir, "use"))
			return errors.Is(err, fs.ErrNotExist)
		}()
		if held {
			n := treeBytes(dir)
			if err := untar.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			} else {
				freed += n
			}
		}
		for _, r := range releases {
			r()
		}
	}
	return freed, errors.Join(errs...)
}

// tryLock takes an exclusive flock on path (created if missing) without waiting.
func tryLock(path string) (release func(), ok bool) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil, false
	}
	return func() { unlockClose(f) }, true
}
