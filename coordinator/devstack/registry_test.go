package devstack_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kbase/cts/coordinator/devstack"
)

// pushRandom pushes a small random image to r and returns its reference.
func pushRandom(t *testing.T, r *devstack.Registry) (name.Reference, v1.Image) {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.Host() + "/test/img:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	return ref, img
}

// pullToLayout copies the image into a fresh OCI layout, which reads every blob to EOF and so
// verifies each digest.
func pullToLayout(t *testing.T, ref name.Reference) error {
	t.Helper()
	img, err := remote.Image(ref, remote.WithContext(t.Context()))
	if err != nil {
		return err
	}
	p, err := layout.Write(t.TempDir(), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	return p.AppendImage(img)
}

func TestRegistry(t *testing.T) {
	r := devstack.TestRegistry(t)
	if !strings.HasPrefix(r.Host(), "127.0.0.1:") {
		t.Fatalf("host = %q", r.Host())
	}
	ref, img := pushRandom(t, r)
	desc, err := remote.Head(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != want {
		t.Fatalf("head digest %s, want %s", desc.Digest, want)
	}
	if err := pullToLayout(t, ref); err != nil {
		t.Fatalf("untampered pull: %v", err)
	}
}

func TestRegistryBlobTamper(t *testing.T) {
	t.Run("in memory", func(t *testing.T) { testBlobTamper(t) })
	t.Run("on disk", func(t *testing.T) { testBlobTamper(t, devstack.WithStorage(t.TempDir())) })
}

func testBlobTamper(t *testing.T, opts ...devstack.RegistryOption) {
	var target atomic.Value // the digest of the layer to corrupt, set once pushed
	target.Store("")
	r := devstack.TestRegistry(t, append(opts, devstack.WithBlobTamper(func(digest string, b []byte) []byte {
		if digest != target.Load().(string) || len(b) == 0 {
			return b
		}
		bad := append([]byte(nil), b...)
		bad[len(bad)/2] ^= 0xff
		return bad
	}))...)
	ref, img := pushRandom(t, r)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[1].Digest()
	if err != nil {
		t.Fatal(err)
	}
	// Before the target is set every blob is served as stored: the pull works.
	if err := pullToLayout(t, ref); err != nil {
		t.Fatalf("pull before tampering: %v", err)
	}
	target.Store(d.String())
	err = pullToLayout(t, ref)
	if err == nil || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("pull of a tampered layer: err = %v, want a digest mismatch", err)
	}
	// The wrong bytes are served under the right digest, with a consistent length.
	resp, err := http.Get("http://" + r.Host() + "/v2/test/img/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("tampered GET: status %d, digest header %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
}

func TestRegistryClose(t *testing.T) {
	r, err := devstack.StartRegistry(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := http.Get("http://" + r.Host() + "/v2/"); err == nil {
		t.Fatal("registry still serves after Close")
	}
}
