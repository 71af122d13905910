package container

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kbase/cts/test/imagebuild"
)

// smallImage is a one-file image; Pull tests need no runc.
func smallImage(t *testing.T, content string) v1.Image {
	t.Helper()
	img, err := imagebuild.Build([]imagebuild.File{{Path: "/data/file", Data: []byte(content)}}, []string{"/bin/true"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layerDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("layers: %v %d", err, len(ls))
	}
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// blobCounter counts GET requests per blob digest and in total.
type blobCounter struct {
	mu    sync.Mutex
	blobs map[string]int
	all   atomic.Int64
}

func (c *blobCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.all.Add(1)
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			c.mu.Lock()
			if c.blobs == nil {
				c.blobs = map[string]int{}
			}
			c.blobs[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
			c.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (c *blobCounter) gets(d v1.Hash) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blobs[d.String()]
}

// tamper serves the blob target with its first byte flipped (same length).
func tamper(target *atomic.Value) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d, _ := target.Load().(string)
			if d == "" || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > 0 {
				body[0] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
}

func TestPullTamperedLayer(t *testing.T) {
	var target atomic.Value
	host := newRegistry(t, tamper(&target))
	img := smallImage(t, "genuine")
	image := push(t, img, host, "tampered")
	ld := layerDigest(t, img)
	target.Store(ld.String())

	d := newDirs(t)
	rt := newOCI(t, d)
	err := rt.Pull(context.Background(), image)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("pull err %v, want ErrDigestMismatch", err)
	}
	t.Logf("pull refused: %v", err)
	blobs, err := os.ReadDir(filepath.Join(d.cache, "layout", "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if strings.HasPrefix(b.Name(), ld.Hex) {
			t.Errorf("tampered layer left in the cache: %s", b.Name())
		}
	}
	if _, ok, err := rt.cache.lookup(context.Background(), mustDigest(t, image)); ok || err != nil {
		t.Errorf("image indexed after a failed pull (err %v)", err)
	}
	s := Spec{ID: "tampered", Image: image, Command: []string{"/bin/true"}}
	if _, err := rt.Run(context.Background(), s); !errors.Is(err, ErrNotPulled) {
		t.Errorf("run err %v, want ErrNotPulled", err)
	}
	if entries, _ := os.ReadDir(d.bundles); len(entries) != 0 {
		t.Errorf("something was unpacked: %v", entries)
	}

	// Once the registry serves the right bytes, the same cache pulls fine.
	target.Store("")
	if err := rt.Pull(context.Background(), image); err != nil {
		t.Fatalf("pull after repair: %v", err)
	}
}

func mustDigest(t *testing.T, image string) v1.Hash {
	t.Helper()
	_, h, found := strings.Cut(image, "@")
	if !found {
		t.Fatalf("%s: no digest", image)
	}
	d, err := v1.NewHash(h)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPullRefusesUnpinned(t *testing.T) {
	host := newRegistry(t, nil)
	push(t, smallImage(t, "x"), host, "tagged")
	rt := newOCI(t, newDirs(t))
	for _, ref := range []string{host + "/tagged:latest", host + "/tagged", "not a reference"} {
		t.Run(ref, func(t *testing.T) {
			err := rt.Pull(context.Background(), ref)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if strings.Contains(ref, "tagged") && !errors.Is(err, ErrNotPinned) {
				t.Errorf("err %v, want ErrNotPinned", err)
			}
		})
	}
}

func TestPullCachedAndShared(t *testing.T) {
	var counter blobCounter
	host := newRegistry(t, counter.wrap)
	img := smallImage(t, "shared")
	image := push(t, img, host, "shared")
	ld := layerDigest(t, img)
	before := counter.all.Load()

	// Two agents on one node: private runc roots and bundles, one cache.
	a, b := newDirs(t), newDirs(t)
	b.cache = a.cache
	rts := []*OCI{newOCI(t, a), newOCI(t, b)}
	var wg sync.WaitGroup
	errs := make([]error, len(rts))
	for i, rt := range rts {
		wg.Go(func() { errs[i] = rt.Pull(context.Background(), image) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("agent %d: %v", i, err)
		}
	}
	if n := counter.gets(ld); n != 1 {
		t.Errorf("layer fetched %d times, want 1", n)
	}
	afterFirst := counter.all.Load()
	if afterFirst == before {
		t.Fatal("no request reached the registry")
	}
	for _, rt := range rts {
		if err := rt.Pull(context.Background(), image); err != nil {
			t.Fatal(err)
		}
	}
	if n := counter.all.Load(); n != afterFirst {
		t.Errorf("cached pull made %d registry requests", n-afterFirst)
	}
	idx, err := rts[0].cache.readIndex()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Errorf("index has %d entries, want 1", len(idx.Manifests))
	}
}

func TestPullPlatformIndex(t *testing.T) {
	requireRunc(t)
	host := newRegistry(t, nil)
	native := toolImage(t)
	other := smallImage(t, "other platform")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref, err := name.ParseReference(host+"/multi:latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d := newDirs(t)
	rt := newOCI(t, d)
	f := &fixture{d: d, rt: rt, image: host + "/multi@" + idxDigest.String()}
	if err := rt.Pull(context.Background(), f.image); err != nil {
		t.Fatal(err)
	}
	_, stdout, _, err := f.run(t, context.Background(), f.spec("echo", "native"))
	if err != nil || stdout != "native\n" {
		t.Fatalf("stdout %q err %v", stdout, err)
	}
	assertNoContainers(t, rt, d)
}

func TestRunCorruptCache(t *testing.T) {
	f := newFixture(t)
	img := toolImage(t)
	ld := layerDigest(t, img)
	blob := filepath.Join(f.d.cache, "layout", "blobs", "sha256", ld.Hex)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(blob, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := f.run(t, context.Background(), f.spec("echo")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("run err %v, want ErrDigestMismatch", err)
	}
	if _, _, _, err := f.run(t, context.Background(), f.spec("echo")); !errors.Is(err, ErrNotPulled) {
		t.Fatalf("run err %v, want ErrNotPulled after eviction", err)
	}
	if err := f.rt.Pull(context.Background(), f.image); err != nil {
		t.Fatal(err)
	}
	if _, stdout, _, err := f.run(t, context.Background(), f.spec("echo", "healed")); err != nil || stdout != "healed\n" {
		t.Fatalf("stdout %q err %v", stdout, err)
	}
}
