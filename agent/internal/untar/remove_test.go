package untar_test

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kbase/cts/agent/internal/untar"
)

// gone fails unless p no longer exists.
func gone(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s still exists (%v)", p, err)
	}
}

// TestRemoveAllDeep: a tree deeper than the descriptor limit. os.RemoveAll keeps a descriptor
// per level and fails there ("too many open files"), which left the trees of hostile refdata
// archives on the shared file system; RemoveAll holds two.
func TestRemoveAllDeep(t *testing.T) {
	top := filepath.Join(t.TempDir(), "deep")
	r, err := os.OpenRoot(filepath.Dir(top))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// 1,500 levels, each with a file beside the next level.
	p := "deep"
	for i := range 1500 {
		p += "/d"
		if i%100 == 0 {
			if err := r.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteFile(p+"/f", []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower the descriptor limit to show the failure: %v", err)
	}
	err = untar.RemoveAll(top)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("RemoveAll with 256 descriptors: %v", err)
	}
	gone(t, top)
}

// TestRemoveAllModes: directories an archive left unreadable, unsearchable or unwritable. Root
// ignores modes, so as root the test runs itself again as nobody (uid 65534).
func TestRemoveAllModes(t *testing.T) {
	if work := os.Getenv("UNTAR_TEST_NOBODY_DIR"); work != "" {
		removeModes(t, work)
		return
	}
	if os.Geteuid() != 0 {
		removeModes(t, t.TempDir())
		return
	}
	base, err := os.MkdirTemp("", "untar-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	work := filepath.Join(base, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "untar.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{base, work, bin} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(work, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestRemoveAllModes$", "-test.v", "-test.count=1")
	// Its temporary folders go where nobody may write (TMPDIR may be a folder only root can).
	cmd.Env = append(os.Environ(), "UNTAR_TEST_NOBODY_DIR="+work, "TMPDIR="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "removed as uid 65534") {
		t.Fatalf("the test did not run as nobody:\n%s", out)
	}
}

// removeModes builds, as a user without root's privileges, trees whose directory modes
// forbid their removal, and removes them.
func removeModes(t *testing.T, work string) {
	if os.Geteuid() == 0 {
		t.Fatal("removeModes must not run as root: modes would not matter")
	}
	// A tree made directly, with every kind of forbidding mode.
	top := filepath.Join(work, "modes")
	for _, d := range []string{"none/sub", "readonly/sub", "noread/sub", "nosearch/sub"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(top, d, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Deepest first: a parent's mode may forbid reaching its child.
	for _, c := range []struct {
		dir  string
		mode fs.FileMode
	}{{"none/sub", 0}, {"none", 0}, {"readonly/sub", 0o500}, {"readonly", 0o555}, {"noread/sub", 0o300},
		{"noread", 0o300}, {"nosearch/sub", 0o600}, {"nosearch", 0o600}} {
		if err := os.Chmod(filepath.Join(top, c.dir), c.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := untar.RemoveAll(top); err != nil {
		t.Fatalf("RemoveAll: %v", err)
	}
	gone(t, top)

	// A layer whose directories forbid writing: extracting as non-root still works (they get
	// u+rwx) and the tree is removable.
	s := newSandbox(t)
	layer := tarOf(t, ent{name: "ro/", typ: tar.TypeDir, mode: 0o555}, file("ro/f", "x"),
		ent{name: "none/", typ: tar.TypeDir, mode: 0o000}, file("none/g", "y"))
	if _, err := s.extract(t, opts(untar.Layers, 1<<20, 100), layer); err != nil {
		t.Fatalf("extract as non-root: %v", err)
	}
	if err := untar.RemoveAll(s.rootDir); err != nil {
		t.Fatal(err)
	}
	gone(t, s.rootDir)
	t.Logf("removed as uid %d", os.Geteuid())
}

func TestRemoveAllEdges(t *testing.T) {
	dir := t.TempDir()
	if err := untar.RemoveAll(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("missing: %v", err)
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := untar.RemoveAll(f); err != nil {
		t.Errorf("file: %v", err)
	}
	gone(t, f)
	// A symlink to a directory: the link goes, never what it points to.
	target := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(target, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	if err := untar.RemoveAll(tree); err != nil {
		t.Fatal(err)
	}
	gone(t, tree)
	if _, err := os.Stat(filepath.Join(target, "keep")); err != nil {
		t.Errorf("followed a symlink: %v", err)
	}
	// Wide directories: more entries than one listing batch.
	wide := filepath.Join(dir, "wide")
	for i := range 3000 {
		sub := filepath.Join(wide, "d"+strings.Repeat("x", i%7), "f"+string(rune('a'+i%26))+itoa(i))
		if err := os.MkdirAll(filepath.Dir(sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sub, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := untar.RemoveAll(wide); err != nil {
		t.Fatal(err)
	}
	gone(t, wide)
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
