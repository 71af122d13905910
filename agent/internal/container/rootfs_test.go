package container

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logFixture is newFixture with the runtime's log (debug level) captured.
func logFixture(t *testing.T) (*fixture, *syncBuffer) {
	t.Helper()
	requireRunc(t)
	host := newRegistry(t, nil)
	image := push(t, toolImage(t), host, "testtool")
	d := newDirs(t)
	var logs syncBuffer
	rt := newOCIWith(t, d, &logs)
	if err := rt.Pull(context.Background(), image); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { assertNoContainers(t, rt, d) })
	return &fixture{kind: EngineRunc, d: d, rt: rt, oci: rt, image: image, prefix: newPrefix()}, &logs
}

// newOCIWith is newOCI logging at debug level into logs.
func newOCIWith(t testing.TB, d dirs, logs *syncBuffer) *OCI {
	t.Helper()
	o, err := NewOCI(OCIConfig{Root: d.root, CacheDir: d.cache, BundleDir: d.bundles, Insecure: true,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// trees lists the entries of the cache's unpacked-image directory.
func trees(t *testing.T, d dirs) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(d.cache, treeSubdir))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// imageDigestHex is the hex digest of the cached image of f's reference.
func imageDigestHex(t *testing.T, f *fixture) string {
	t.Helper()
	_, ref, err := f.oci.parseRef(f.image)
	if err != nil {
		t.Fatal(err)
	}
	h, ok, err := f.oci.cache.lookup(context.Background(), ref)
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	return h.Hex
}

// TestSharedRootfs: the image is unpacked once into the cache and every container's root is
// an overlay of that tree: read-only to the container, unchanged by runs (runc's mount points
// go to the bundle), and unmounted with the bundle.
func TestSharedRootfs(t *testing.T) {
	t.Parallel()
	f, logs := logFixture(t)
	ctx := context.Background()
	s := f.spec("write", "/bin/x")
	s.Mounts = []Mount{{Source: t.TempDir(), Destination: "/not/in/the/image"}}
	want := "error: open /bin/x: read-only file system\n"
	for range 3 {
		_, stdout, _, err := f.run(t, ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if stdout != want {
			t.Errorf("stdout %q, want %q", stdout, want)
		}
		s, want = f.spec("echo", "again"), "again\n"
	}
	hex := imageDigestHex(t, f)
	if got := trees(t, f.d); len(got) != 1 || got[0] != hex {
		t.Errorf("unpacked trees %v, want only %s", got, hex)
	}
	if n := strings.Count(logs.String(), "image unpacked into the node's cache"); n != 1 {
		t.Errorf("unpacked %d times, want once:\n%s", n, logs.String())
	}
	dir := filepath.Join(f.d.cache, treeSubdir, hex)
	if diff, err := checkTree(dir); err != nil || diff != "" {
		t.Errorf("the tree changed under its containers: %q %v", diff, err)
	}
	for _, p := range []string{"not", "proc", "dev", "tmp"} {
		if _, err := os.Lstat(filepath.Join(dir, "tree", p)); err == nil {
			t.Errorf("a mount point %s was created in the shared tree", p)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "tree", "bin", "testtool")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("tree: %v %v", fi, err)
	}
}

// TestSharedRootfsTampered: a tree changed on disk after unpacking is not used: it is set
// aside and unpacked again, and the agent logs what changed; whatever the change.
func TestSharedRootfsTampered(t *testing.T) {
	t.Parallel()
	f, logs := logFixture(t)
	ctx := context.Background()
	if _, _, _, err := f.run(t, ctx, f.spec("echo", "first")); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(filepath.Join(f.d.cache, treeSubdir, imageDigestHex(t, f)), "tree")
	tool := filepath.Join(tree, "bin", "testtool")
	orig, err := os.ReadFile(tool)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T)
		change string
	}{
		{"content changed, size and mtime kept", func(t *testing.T) {
			fi, err := os.Stat(tool)
			if err != nil {
				t.Fatal(err)
			}
			b := append([]byte(nil), orig...)
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(tool, b, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(tool, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}, "changed: bin/testtool"},
		{"mode changed", func(t *testing.T) {
			if err := os.Chmod(tool, 0o4755); err != nil {
				t.Fatal(err)
			}
		}, "changed: bin/testtool"},
		{"file added", func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(tree, "bin", "zz-planted"), []byte("x"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "bin"},
		{"file removed", func(t *testing.T) {
			if err := os.Remove(tool); err != nil {
				t.Fatal(err)
			}
		}, "bin"},
		{"manifest removed", func(t *testing.T) {
			if err := os.Remove(filepath.Join(filepath.Dir(tree), "manifest")); err != nil {
				t.Fatal(err)
			}
		}, "the manifest is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(logs.String(), "changed after it was unpacked")
			tc.tamper(t)
			_, stdout, _, err := f.run(t, ctx, f.spec("echo", "healed"))
			if err != nil || stdout != "healed\n" {
				t.Fatalf("stdout %q err %v", stdout, err)
			}
			l := logs.String()
			if strings.Count(l, "changed after it was unpacked") != before+1 || !strings.Contains(l, tc.change) {
				t.Errorf("the change was not logged (want %q):\n%s", tc.change, l)
			}
			got, err := os.ReadFile(tool)
			if err != nil || string(got) != string(orig) {
				t.Errorf("the tree was not unpacked again: %v", err)
			}
			if fi, err := os.Stat(tool); err != nil || fi.Mode() != 0o755 {
				t.Errorf("mode %v %v", fi.Mode(), err)
			}
			if diff, err := checkTree(filepath.Dir(tree)); err != nil || diff != "" {
				t.Errorf("the new tree does not match its manifest: %q %v", diff, err)
			}
			// The tampered tree was in no container's use: removed at once.
			if got := trees(t, f.d); len(got) != 1 {
				t.Errorf("trees %v, want one", got)
			}
		})
	}
}

// TestSharedRootfsConcurrent: agents sharing a fresh cache start containers of one image at
// the same time: one unpacks it, the others wait for it and use it; none sees half a tree.
func TestSharedRootfsConcurrent(t *testing.T) {
	t.Parallel()
	requireRunc(t)
	host := newRegistry(t, nil)
	image := push(t, toolImage(t), host, "testtool")
	d := newDirs(t)
	var logs syncBuffer
	const agents = 4
	var wg sync.WaitGroup
	errs := make([]error, agents)
	outs := make([]string, agents)
	for i := range agents {
		rt := newOCIWith(t, d, &logs)
		f := &fixture{kind: EngineRunc, d: d, rt: rt, oci: rt, image: image, prefix: newPrefix()}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rt.Pull(context.Background(), image); err != nil {
				errs[i] = err
				return
			}
			_, outs[i], _, errs[i] = f.run(t, context.Background(), f.spec("echo", "ok"))
		}()
	}
	wg.Wait()
	for i := range agents {
		if errs[i] != nil || outs[i] != "ok\n" {
			t.Errorf("agent %d: stdout %q err %v", i, outs[i], errs[i])
		}
	}
	if n := strings.Count(logs.String(), "image unpacked into the node's cache"); n != 1 {
		t.Errorf("unpacked %d times, want once:\n%s", n, logs.String())
	}
	if got := trees(t, d); len(got) != 1 || strings.Contains(got[0], ".") {
		t.Errorf("trees %v, want one complete tree", got)
	}
	assertNoContainers(t, newOCI(t, d), d)
}

// TestSharedRootfsPrune: the unpacked trees count in the cache's size and go with their
// image; a tree set aside while a container runs on it stays until that container is gone.
func TestSharedRootfsPrune(t *testing.T) {
	t.Parallel()
	f, _ := logFixture(t)
	ctx := context.Background()

	// A container runs on the tree; then the tree is tampered with and another run replaces it.
	long := f.spec("sleep", "600")
	done := startBackground(t, f, long)
	hex := imageDigestHex(t, f)
	dir := filepath.Join(f.d.cache, treeSubdir, hex)
	if err := os.WriteFile(filepath.Join(dir, "tree", "planted"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stdout, _, err := f.run(t, ctx, f.spec("echo", "ok")); err != nil || stdout != "ok\n" {
		t.Fatalf("stdout %q err %v", stdout, err)
	}
	if got := trees(t, f.d); len(got) != 2 {
		t.Fatalf("trees %v, want the new one and the one set aside (in use)", got)
	}
	// Within its bounds, nothing goes but what nobody needs and nobody uses: the tree set
	// aside is in use.
	if _, err := f.rt.PruneImages(ctx, 1<<40, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := trees(t, f.d); len(got) != 2 {
		t.Errorf("trees %v after a prune while in use, want both", got)
	}
	if err := f.rt.Remove(ctx, long.ID); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Logf("the long run ended with %v", err)
	}
	if _, err := f.rt.PruneImages(ctx, 1<<40, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := trees(t, f.d); len(got) != 1 || got[0] != hex {
		t.Errorf("trees %v after the container ended, want only %s", got, hex)
	}

	// The agent exits: its image goes over the size bound, with its tree, whose size counts.
	blobs, _ := f.oci.blobBytes()
	release(f.rt)
	pruned, err := f.rt.PruneImages(ctx, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(pruned) != 1 || pruned[0].Bytes <= blobs {
		t.Errorf("pruned %v, want the image with more than its %d bytes of blobs", pruned, blobs)
	}
	if got := trees(t, f.d); len(got) != 0 {
		t.Errorf("trees %v left after the image was pruned", got)
	}
}

// TestPrivateRootfs: with PrivateRootfs (and where overlayfs cannot be mounted) each
// container gets its own unpacked root, as hardened as the shared one.
func TestPrivateRootfs(t *testing.T) {
	t.Parallel()
	requireRunc(t)
	host := newRegistry(t, nil)
	image := push(t, toolImage(t), host, "testtool")
	d := newDirs(t)
	rt, err := NewOCI(OCIConfig{Root: d.root, CacheDir: d.cache, BundleDir: d.bundles, Insecure: true, PrivateRootfs: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Pull(context.Background(), image); err != nil {
		t.Fatal(err)
	}
	f := &fixture{kind: EngineRunc, d: d, rt: rt, oci: rt, image: image, prefix: newPrefix()}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"write", "/x"}, "error: open /x: read-only file system\n"},
		{[]string{"write", "/tmp/x"}, "ok\n"},
		{[]string{"caps"}, "CapEff:\t0000000000000000\nNoNewPrivs:\t1\n"},
	} {
		_, stdout, _, err := f.run(t, context.Background(), f.spec(tc.args...))
		if err != nil || stdout != tc.want {
			t.Errorf("%v: stdout %q err %v, want %q", tc.args, stdout, err, tc.want)
		}
	}
	if got := trees(t, d); len(got) != 0 {
		t.Errorf("trees %v with private roots", got)
	}
	assertNoContainers(t, rt, d)
}
