package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Image caches are bounded by size and age (PruneImages): the least recently used images go
// first, and an image an agent uses is never removed.
//
// "In use" is a flock: an agent takes a shared lock on the image's use file (oci:
// <CacheDir>/use/<reference digest>; docker: the pull record, see docker_images.go) when it
// pulls it and keeps it until it exits, and touches the file, which makes its modification
// time the image's last use. A pruner takes the exclusive lock without waiting: it fails while
// any live agent holds the image, and the kernel drops a dead agent's locks.

// pullGate is the lock file every pull holds shared while it fetches: a pull writes (or
// reuses) blobs before its index entry names them, so a pruner deletes unreferenced blobs
// only while it holds the gate exclusively, i.e. while no pull runs.
const pullGate = "pulls.lock"

// PrunedImage is an image a prune removed.
type PrunedImage struct {
	Image    string
	Bytes    int64
	LastUsed time.Time
}

func (p PrunedImage) String() string {
	return fmt.Sprintf("%s (%d bytes, last used %s)", p.Image, p.Bytes, p.LastUsed.UTC().Format(time.RFC3339))
}

// holdImage takes a shared lock on the use file of a reference digest for the life of the
// runtime (released when the process exits) and marks it used now.
func (o *OCI) holdImage(ctx context.Context, refDigest v1.Hash) error {
	o.heldMu.Lock()
	defer o.heldMu.Unlock()
	p := filepath.Join(o.cache.dir, "use", refDigest.Hex)
	if _, ok := o.held[p]; !ok {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		unlock, err := lockFile(ctx, p, syscall.LOCK_SH)
		if err != nil {
			return err
		}
		o.held[p] = unlock
	}
	now := time.Now()
	return os.Chtimes(p, now, now)
}

// PruneImages implements Runtime for the oci cache: it removes images unused for maxAge, then
// the least recently used ones while the cache holds more than maxBytes, skipping any image a
// live agent holds; then the blobs no remaining image needs.
func (o *OCI) PruneImages(ctx context.Context, maxBytes int64, maxAge time.Duration) ([]PrunedImage, error) {
	if err := o.ensureCache(ctx); err != nil {
		return nil, fmt.Errorf("prune images: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(o.cache.dir, ".lock"), syscall.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("prune images: %w", err)
	}
	defer unlock()
	idx, err := o.cache.readIndex()
	if err != nil {
		return nil, fmt.Errorf("prune images: %w", err)
	}
	type entry struct {
		desc  v1.Descriptor
		ref   string // reference digest hex (the use file's name)
		blobs []v1.Hash
		size  int64
		tree  int64 // its unpacked tree's disk space (part of size)
		used  time.Time
	}
	var entries []*entry
	for _, d := range idx.Manifests {
		e := &entry{desc: d, ref: d.Digest.Hex, blobs: []v1.Hash{d.Digest}}
		if r, err := v1.NewHash(d.Annotations[refAnnotation]); err == nil {
			e.ref = r.Hex
		}
		if raw, err := o.cache.readSmallBlob(d.Digest); err == nil {
			if m, err := v1.ParseManifest(bytes.NewReader(raw)); err == nil {
				e.blobs = append(e.blobs, m.Config.Digest)
				for _, l := range m.Layers {
					e.blobs = append(e.blobs, l.Digest)
				}
			}
		}
		for _, b := range e.blobs {
			if fi, err := os.Stat(o.cache.blobPath(b)); err == nil {
				e.size += fi.Size()
			}
		}
		e.tree = treeBytes(o.cache.treeDir(d.Digest))
		e.size += e.tree
		if fi, err := os.Stat(filepath.Join(o.cache.dir, "use", e.ref)); err == nil {
			e.used = fi.ModTime()
		} else if fi, err := os.Stat(o.cache.blobPath(d.Digest)); err == nil {
			e.used = fi.ModTime()
		}
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].used.Before(entries[j].used) })
	total, _ := o.blobBytes()
	total += o.treesBytes()

	refs := func(kept []*entry) map[v1.Hash]bool {
		m := map[v1.Hash]bool{}
		for _, e := range kept {
			for _, b := range e.blobs {
				m[b] = true
			}
		}
		return m
	}
	var pruned []PrunedImage
	var releases []func()
	defer func() {
		for _, r := range releases {
			r()
		}
	}()
	kept := append([]*entry(nil), entries...)
	for _, e := range entries {
		if time.Since(e.used) <= maxAge && total <= maxBytes {
			continue
		}
		use := filepath.Join(o.cache.dir, "use", e.ref)
		f, err := os.OpenFile(use, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // a live agent holds it
			continue
		}
		releases = append(releases, func() { os.Remove(use); unlockClose(f) })
		rest := kept[:0:0]
		for _, k := range kept {
			if k != e {
				rest = append(rest, k)
			}
		}
		still := refs(rest)
		var freed int64
		for _, b := range e.blobs {
			if !still[b] {
				if fi, err := os.Stat(o.cache.blobPath(b)); err == nil {
					freed += fi.Size()
				}
			}
		}
		if !still[e.desc.Digest] {
			freed += e.tree
		}
		kept, total = rest, total-freed
		name := e.desc.Digest.String()
		if r := e.desc.Annotations[imageAnnotation]; r != "" {
			name = r
		} else if r := e.desc.Annotations[refAnnotation]; r != "" {
			name = r
		}
		pruned = append(pruned, PrunedImage{Image: name, Bytes: e.size, LastUsed: e.used})
	}
	if len(pruned) > 0 {
		idx.Manifests = idx.Manifests[:0]
		for _, k := range kept {
			idx.Manifests = append(idx.Manifests, k.desc)
		}
		b, err := json.MarshalIndent(idx, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("prune images: %w", err)
		}
		if err := writeFileAtomic(filepath.Join(o.cache.layout, "index.json"), b); err != nil {
			return nil, fmt.Errorf("prune images: %w", err)
		}
	}
	// Unpacked trees no image needs, set aside or half-built, that no container uses.
	keep := map[string]bool{}
	for _, k := range kept {
		keep[k.desc.Digest.Hex] = true
	}
	if _, err := o.sweepTrees(keep); err != nil {
		return pruned, fmt.Errorf("prune images: %w", err)
	}
	// Blobs no image needs: those of pruned images, and those of pulls that never finished.
	// Only while no pull runs (see pullGate); the next prune catches up otherwise.
	gate, ok := tryExclusive(filepath.Join(o.cache.dir, pullGate))
	if !ok {
		return pruned, nil
	}
	defer gate()
	still := refs(kept)
	dir := filepath.Join(o.cache.layout, "blobs", "sha256")
	files, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return pruned, fmt.Errorf("prune images: %w", err)
	}
	var errs []error
	for _, f := range files {
		h := v1.Hash{Algorithm: "sha256", Hex: strings.SplitN(f.Name(), ".", 2)[0]}
		if still[h] && !strings.Contains(f.Name(), ".tmp") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, f.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return pruned, fmt.Errorf("prune images: %w", err)
	}
	return pruned, nil
}

// blobBytes is the size of every blob in the cache.
func (o *OCI) blobBytes() (int64, error) {
	files, err := os.ReadDir(filepath.Join(o.cache.layout, "blobs", "sha256"))
	var n int64
	for _, f := range files {
		if info, err := f.Info(); err == nil {
			n += info.Size()
		}
	}
	return n, err
}

// treesBytes is the disk space of the unpacked trees in the cache, as their manifests record
// it (a build in progress counts once it is complete).
func (o *OCI) treesBytes() int64 {
	entries, _ := os.ReadDir(filepath.Join(o.cache.dir, treeSubdir))
	var n int64
	for _, e := range entries {
		n += treeBytes(filepath.Join(o.cache.dir, treeSubdir, e.Name()))
	}
	return n
}
