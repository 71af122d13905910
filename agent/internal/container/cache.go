package container

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// The cache is an OCI image layout (blobs/sha256/<hex>, index.json, oci-layout) under
// <CacheDir>/layout, shared by every agent on the node:
//
//   - Blobs are written to a temporary file while their SHA-256 is computed, synced, and
//     renamed to their digest only when the digest and size match. A blob file therefore always
//     holds verified content (or is missing), and readers never need a lock for it.
//     go-containerregistry's layout.AppendImage is not used for writing: it writes config and
//     manifest blobs in place (a concurrent reader can see a half-written file) and rewrites
//     index.json in place.
//   - index.json lists every complete image (written after all its blobs) and is replaced
//     atomically under an exclusive flock on <CacheDir>/.lock; readers take a shared lock.
//   - A pull holds an exclusive flock on <CacheDir>/locks/<ref-digest> so two agents pulling the
//     same image download it once; pulls of different images proceed in parallel.
//
// Blobs are verified again when read for unpacking (see unpack.go): the cache outlives any
// one agent and sits on a shared disk, so a corrupt or replaced blob must not be trusted just
// because a previous pull verified it. The cost is one SHA-256 pass over bytes that are read
// anyway.

// refAnnotation records, on an index entry, the digest of the reference that was pulled when
// it differs from the image's own digest (the reference named a multi-platform index).
const refAnnotation = "org.kbase.cts.ref.digest"

// imageAnnotation records, on an index entry, the reference that was pulled, for messages.
const imageAnnotation = "org.kbase.cts.image"

// pullParallelism bounds concurrent layer downloads of one pull.
const pullParallelism = 3

type cache struct {
	dir    string // <CacheDir>
	layout string // <CacheDir>/layout
}

func (c *cache) blobPath(h v1.Hash) string {
	return filepath.Join(c.layout, "blobs", h.Algorithm, h.Hex)
}

// init creates the layout files if missing.
func (c *cache) init(ctx context.Context) error {
	// Private: blobs of images pulled with credentials must not be readable by other users.
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("cache init: %w", err)
	}
	for _, d := range []string{filepath.Join(c.layout, "blobs", "sha256"), filepath.Join(c.dir, "locks")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cache init: %w", err)
		}
	}
	unlock, err := lockFile(ctx, filepath.Join(c.dir, ".lock"), syscall.LOCK_EX)
	if err != nil {
		return fmt.Errorf("cache init: %w", err)
	}
	defer unlock()
	if f, err := os.OpenFile(filepath.Join(c.dir, pullGate), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return fmt.Errorf("cache init: %w", err)
	} else {
		f.Close()
	}
	if _, err := os.Stat(filepath.Join(c.layout, "oci-layout")); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(filepath.Join(c.layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return fmt.Errorf("cache init: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(c.layout, "index.json")); errors.Is(err, fs.ErrNotExist) {
		idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
		b, _ := json.Marshal(idx)
		if err := writeFileAtomic(filepath.Join(c.layout, "index.json"), b); err != nil {
			return fmt.Errorf("cache init: %w", err)
		}
	}
	return nil
}

// lookup returns the digest of the cached image for the reference digest ref.
func (c *cache) lookup(ctx context.Context, ref v1.Hash) (v1.Hash, bool, error) {
	unlock, err := lockFile(ctx, filepath.Join(c.dir, ".lock"), syscall.LOCK_SH)
	if err != nil {
		return v1.Hash{}, false, err
	}
	defer unlock()
	idx, err := c.readIndex()
	if err != nil {
		return v1.Hash{}, false, err
	}
	for _, m := range idx.Manifests {
		if m.Digest == ref || m.Annotations[refAnnotation] == ref.String() {
			return m.Digest, true, nil
		}
	}
	return v1.Hash{}, false, nil
}

func (c *cache) readIndex() (*v1.IndexManifest, error) {
	f, err := os.Open(filepath.Join(c.layout, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("read cache index: %w", err)
	}
	defer f.Close()
	idx, err := v1.ParseIndexManifest(f)
	if err != nil {
		return nil, fmt.Errorf("read cache index: %w", err)
	}
	return idx, nil
}

// addToIndex records a complete image; a no-op when it is already listed.
func (c *cache) addToIndex(ctx context.Context, desc v1.Descriptor) error {
	unlock, err := lockFile(ctx, filepath.Join(c.dir, ".lock"), syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := c.readIndex()
	if err != nil {
		return err
	}
	for _, m := range idx.Manifests {
		if m.Digest == desc.Digest && m.Annotations[refAnnotation] == desc.Annotations[refAnnotation] {
			return nil
		}
	}
	idx.Manifests = append(idx.Manifests, desc)
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("write cache index: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(c.layout, "index.json"), b); err != nil {
		return fmt.Errorf("write cache index: %w", err)
	}
	return nil
}

// evict drops every index entry of image and its blob corrupt (when set), so that the next
// Pull fetches the image again.
func (c *cache) evict(ctx context.Context, image v1.Hash, corrupt *v1.Hash) error {
	unlock, err := lockFile(ctx, filepath.Join(c.dir, ".lock"), syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if corrupt != nil {
		if err := os.Remove(c.blobPath(*corrupt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("evict %s: %w", corrupt, err)
		}
	}
	idx, err := c.readIndex()
	if err != nil {
		return err
	}
	kept := idx.Manifests[:0]
	for _, m := range idx.Manifests {
		if m.Digest != image {
			kept = append(kept, m)
		}
	}
	idx.Manifests = kept
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("evict %s: %w", image, err)
	}
	return writeFileAtomic(filepath.Join(c.layout, "index.json"), b)
}

// readSmallBlob reads a manifest or config blob and verifies it.
func (c *cache) readSmallBlob(h v1.Hash) ([]byte, error) {
	b, err := os.ReadFile(c.blobPath(h))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	if err := checkDigest(h, b); err != nil {
		return nil, err
	}
	return b, nil
}

// writeBlob stores the content of rc as blob h (of size bytes, -1 when unknown), verifying
// digest and size before the blob becomes visible. An existing blob of the right size is kept
// (it was verified when written; unpacking verifies it again).
func (c *cache) writeBlob(h v1.Hash, size int64, rc io.ReadCloser) (err error) {
	defer rc.Close()
	if h.Algorithm != "sha256" {
		return fmt.Errorf("write blob %s: unsupported digest algorithm", h)
	}
	final := c.blobPath(h)
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size) {
		// Reused: touched, so that a pruner does not take it for an orphan meanwhile.
		now := time.Now()
		_ = os.Chtimes(final, now, now)
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(final), h.Hex+".tmp*")
	if err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	hw := sha256.New()
	src := io.Reader(rc)
	if size >= 0 {
		// Never take more than the descriptor promised from a registry.
		src = io.LimitReader(rc, size+1)
	}
	n, err := io.Copy(io.MultiWriter(f, hw), src)
	if err != nil {
		return fmt.Errorf("write blob %s: %w", h, classifyFetchErr(err))
	}
	if size >= 0 && n != size {
		return fmt.Errorf("write blob %s: got %d bytes, want %d: %w", h, n, size, ErrDigestMismatch)
	}
	if got := hex.EncodeToString(hw.Sum(nil)); got != h.Hex {
		return fmt.Errorf("write blob %s: content has sha256:%s: %w", h, got, ErrDigestMismatch)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	return nil
}

// classifyFetchErr marks go-containerregistry's own verification failures as
// ErrDigestMismatch: it checks registry blobs at EOF too, so its error reaches us before our
// own comparison, and its error type lives in an internal package (no errors.As), hence the
// text match.
func classifyFetchErr(err error) error {
	if err != nil && strings.Contains(err.Error(), "error verifying") {
		return fmt.Errorf("%w: %w", ErrDigestMismatch, err)
	}
	return err
}

func checkDigest(h v1.Hash, b []byte) error {
	if h.Algorithm != "sha256" {
		return fmt.Errorf("blob %s: unsupported digest algorithm", h)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != h.Hex {
		return fmt.Errorf("blob %s: content has sha256:%s: %w", h, got, ErrDigestMismatch)
	}
	return nil
}

// verifyingReader hashes what is read through it; check compares with the expected digest
// and size once the reader has been drained.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want v1.Hash
	size int64
}

func newVerifyingReader(r io.Reader, want v1.Hash, size int64) *verifyingReader {
	return &verifyingReader{r: r, h: sha256.New(), want: want, size: size}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	return n, err
}

// check drains the rest of the stream and compares digest and size.
func (v *verifyingReader) check() error {
	if _, err := io.Copy(io.Discard, v); err != nil {
		return fmt.Errorf("blob %s: %w", v.want, err)
	}
	if v.size >= 0 && v.n != v.size {
		return fmt.Errorf("blob %s: %d bytes, want %d: %w", v.want, v.n, v.size, ErrDigestMismatch)
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
		return fmt.Errorf("blob %s: content has sha256:%s: %w", v.want, got, ErrDigestMismatch)
	}
	return nil
}

// Pull implements Runtime.
func (o *OCI) Pull(ctx context.Context, image string) error {
	ref, refDigest, err := o.parseRef(image)
	if err != nil {
		return err
	}
	if err := o.ensureCache(ctx); err != nil {
		return wrapPull(image, err)
	}
	// From now until this agent exits, no pruner removes the image.
	if err := o.holdImage(ctx, refDigest); err != nil {
		return wrapPull(image, err)
	}
	if _, ok, err := o.cache.lookup(ctx, refDigest); err != nil || ok {
		return wrapPull(image, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(o.cache.dir, "locks", refDigest.Hex), syscall.LOCK_EX)
	if err != nil {
		return wrapPull(image, err)
	}
	defer unlock()
	// Another agent may have pulled it while this one waited for the lock.
	if _, ok, err := o.cache.lookup(ctx, refDigest); err != nil || ok {
		return wrapPull(image, err)
	}
	// No pruner deletes blobs while a pull writes them (see pullGate).
	gate, err := lockFile(ctx, filepath.Join(o.cache.dir, pullGate), syscall.LOCK_SH)
	if err != nil {
		return wrapPull(image, err)
	}
	defer gate()
	return wrapPull(image, o.fetch(ctx, ref, refDigest))
}

func wrapPull(image string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("pull %s: %w", image, noSpace(err))
}

// parseRef accepts only digest references ("host/name@sha256:…", optionally with a tag
// before the digest, which is ignored).
func (o *OCI) parseRef(image string) (name.Digest, v1.Hash, error) {
	var opts []name.Option
	if o.cfg.Insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(image, opts...)
	if err != nil {
		return name.Digest{}, v1.Hash{}, fmt.Errorf("parse image %q: %w", image, err)
	}
	d, ok := ref.(name.Digest)
	if !ok {
		return name.Digest{}, v1.Hash{}, fmt.Errorf("image %q: %w", image, ErrNotPinned)
	}
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return name.Digest{}, v1.Hash{}, fmt.Errorf("parse image %q: %w", image, err)
	}
	return d, h, nil
}

func (o *OCI) fetch(ctx context.Context, ref name.Digest, refDigest v1.Hash) error {
	// The first failed layer download cancels the others (they share this context).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(o.keychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return fmt.Errorf("get manifest: %w: %w", ErrImageUnavailable, err)
	}
	// go-containerregistry already refuses a manifest whose digest differs from the
	// reference; checking the raw bytes here keeps that guarantee ours.
	if err := checkDigest(refDigest, desc.Manifest); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	img, err := desc.Image() // resolves a multi-platform index to linux/GOARCH
	if err != nil {
		return fmt.Errorf("resolve image: %w", err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	imgDigest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := checkDigest(imgDigest, rawManifest); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	manifest, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	if len(layers) != len(manifest.Layers) {
		return fmt.Errorf("layers: %d listed, %d resolved", len(manifest.Layers), len(layers))
	}
	var g errgroup.Group
	g.SetLimit(pullParallelism)
	for i, l := range layers {
		desc := manifest.Layers[i]
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			rc, err := l.Compressed()
			if err != nil {
				err = fmt.Errorf("layer %s: %w", desc.Digest, err)
			} else {
				err = o.cache.writeBlob(desc.Digest, desc.Size, rc)
			}
			if err != nil {
				cancel()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", classifyFetchErr(err))
	}
	if err := o.cache.writeBlob(manifest.Config.Digest, manifest.Config.Size, io.NopCloser(bytes.NewReader(rawConfig))); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := o.cache.writeBlob(imgDigest, int64(len(rawManifest)), io.NopCloser(bytes.NewReader(rawManifest))); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	entry := v1.Descriptor{
		MediaType:   manifest.MediaType,
		Size:        int64(len(rawManifest)),
		Digest:      imgDigest,
		Annotations: map[string]string{refAnnotation: refDigest.String(), imageAnnotation: ref.String()},
	}
	if entry.MediaType == "" {
		entry.MediaType = types.OCIManifestSchema1
	}
	return o.cache.addToIndex(ctx, entry)
}

// lockFile takes a flock (how: syscall.LOCK_SH or LOCK_EX) on path, polling so that ctx can
// interrupt the wait. The returned function releases it. flock locks belong to the open file,
// so this also excludes goroutines of one process from each other.
func lockFile(ctx context.Context, path string, how int) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	delay := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// writeFileAtomic replaces path with data through a synced temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// keychainOrDefault returns kc, or authn.DefaultKeychain when nil.
func keychainOrDefault(kc authn.Keychain) authn.Keychain {
	if kc == nil {
		return authn.DefaultKeychain
	}
	return kc
}
