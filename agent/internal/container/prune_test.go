package container

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kbase/cts/test/dockertest"
)

// TestPruneImages: the image caches (the oci cache, the images agents pulled into the Docker
// engine) are bounded by size and age, least recently used first, and never lose an image a
// live agent uses.
func TestPruneImages(t *testing.T) {
	t.Parallel()
	host := newRegistry(t, nil)
	images := []string{push(t, smallImage(t, "a"), host, "prune-a"), push(t, smallImage(t, "b"), host, "prune-b"),
		push(t, smallImage(t, "c"), host, "prune-c")}
	cases := []struct {
		name string
		// agents returns the runtimes of three agents sharing one node, and the pruner's.
		agents func(t *testing.T) (users []Runtime, pruner Runtime)
		// present reports whether the node still has the image.
		present func(t *testing.T, pruner Runtime, image string) bool
	}{
		{
			name: "oci",
			agents: func(t *testing.T) ([]Runtime, Runtime) {
				requireRunc(t)
				d := newDirs(t)
				return []Runtime{newOCI(t, d), newOCI(t, d), newOCI(t, d)}, newOCI(t, d)
			},
			present: func(t *testing.T, pruner Runtime, image string) bool {
				o := pruner.(*OCI)
				_, ref, _ := o.parseRef(image)
				_, ok, err := o.cache.lookup(context.Background(), ref)
				if err != nil {
					t.Fatal(err)
				}
				return ok
			},
		},
		{
			name: "docker",
			agents: func(t *testing.T) ([]Runtime, Runtime) {
				sock := dockertest.Require(t)
				state := t.TempDir()
				mk := func() Runtime { return NewDocker(DockerConfig{Socket: sock, StateDir: state}) }
				t.Cleanup(func() {
					for _, img := range images {
						removeDockerImage(t, mk().(*Docker), img)
					}
				})
				return []Runtime{mk(), mk(), mk()}, mk()
			},
			present: func(t *testing.T, pruner Runtime, image string) bool {
				return pruner.(*Docker).call(context.Background(), "GET", "/images/"+image+"/json", nil, nil, nil) == nil
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			users, pruner := tc.agents(t)
			for i, img := range images {
				if err := users[i].Pull(ctx, img); err != nil {
					t.Fatal(err)
				}
			}
			// Agents 1 and 2 exit (their use locks go with them); agent 0 still runs.
			release(users[1])
			release(users[2])
			// Nothing is over its bounds: nothing goes.
			if got, err := pruner.PruneImages(ctx, 1<<40, time.Hour); err != nil || len(got) != 0 {
				t.Fatalf("prune within bounds: %v %v", got, err)
			}
			// Over the size bound: the free images go, least recently used first; agent 0's
			// image stays, whatever its age.
			got, err := pruner.PruneImages(ctx, 0, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range got {
				names = append(names, p.Image)
			}
			if len(got) != 2 || !slices.Contains(names, images[1]) || !slices.Contains(names, images[2]) {
				t.Errorf("pruned %v, want %s and %s", names, images[1], images[2])
			}
			for i, img := range images {
				if got := tc.present(t, pruner, img); got != (i == 0) {
					t.Errorf("image %d present: %v", i, got)
				}
			}
			// Once its agent exits, an image past its age goes too.
			release(users[0])
			if got, err := pruner.PruneImages(ctx, 1<<40, 0); err != nil || len(got) != 1 || got[0].Image != images[0] {
				t.Errorf("age prune: %v %v", got, err)
			}
			if tc.present(t, pruner, images[0]) {
				t.Error("the aged image is still there")
			}
			if o, ok := pruner.(*OCI); ok {
				// The blob sweep runs only while no pull holds the gate; a prune that finds it
				// held leaves the blobs to the next prune (a process another test forks may
				// hold a copy of a lock file for a moment). Nothing holds it for long here.
				for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
					n, _ := o.blobBytes()
					if n == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%d bytes of blobs left in the oci cache after a minute of prunes", n)
						break
					}
					if _, err := pruner.PruneImages(ctx, 1<<40, 0); err != nil {
						t.Fatal(err)
					}
				}
				if left, _ := filepath.Glob(filepath.Join(o.cfg.CacheDir, "use", "*")); len(left) != 0 {
					t.Errorf("use files left: %v", left)
				}
			}
			// A pull after a prune works (the cache is consistent).
			if err := pruner.Pull(ctx, images[1]); err != nil || !tc.present(t, pruner, images[1]) {
				t.Errorf("pull after prune: %v", err)
			}
		})
	}
}

// release drops a runtime's image use locks, as its agent's exit would.
func release(rt Runtime) {
	var m map[string]func()
	switch r := rt.(type) {
	case *OCI:
		r.heldMu.Lock()
		defer r.heldMu.Unlock()
		m = r.held
	case *Docker:
		r.heldMu.Lock()
		defer r.heldMu.Unlock()
		m = r.held
	}
	for k, unlock := range m {
		unlock()
		delete(m, k)
	}
}
