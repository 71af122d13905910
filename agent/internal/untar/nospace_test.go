package untar_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kbase/cts/agent/internal/untar"
)

// smallFS mounts a tmpfs of size bytes for the test: a real file system that fills up. It
// needs root (CAP_SYS_ADMIN); elsewhere the test is skipped, saying so.
func smallFS(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+itoa(size)); err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs to fill up (needs root): %v", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestNoSpace(t *testing.T) {
	big := strings.Repeat("\x00", 3<<20)
	for _, mode := range []untar.Mode{untar.Tree, untar.Layers} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := smallFS(t, 1<<20)
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			x, err := untar.New(root, opts(mode, 1<<30, 100))
			if err != nil {
				t.Fatal(err)
			}
			err = x.Extract(context.Background(), bytes.NewReader(tarOf(t, file("small", "x"), file("db/big", big))))
			if !errors.Is(err, untar.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("err = %v, want ErrNoSpace", err)
			}
			if !strings.Contains(err.Error(), `"db/big"`) || !strings.Contains(err.Error(), "no space left") {
				t.Errorf("the message does not say what happened: %v", err)
			}
		})
	}
}
