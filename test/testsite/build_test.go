package testsite

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

func TestModuleRoot(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if root != want {
		t.Errorf("module root %s, want %s", root, want)
	}

	t.Run("found from a deeper folder", func(t *testing.T) {
		t.Chdir(filepath.Join(root, "coordinator", "internal", "jobinput", "testdata"))
		if got, err := moduleRoot(); err != nil || got != root {
			t.Errorf("moduleRoot() = %q, %v, want %q", got, err, root)
		}
	})
	t.Run("no go.mod above", func(t *testing.T) {
		t.Chdir(t.TempDir())
		if got, err := moduleRoot(); err == nil {
			t.Errorf("moduleRoot() = %q outside any module, want an error", got)
		}
	})
}

// TestBinary builds the small test tool: the binary runs, keeps its package's base name, is
// built only once, and a package that does not build is reported.
func TestBinary(t *testing.T) {
	bin := Binary(t, TestToolPkg)
	out, err := exec.Command(bin, "echo", "a b").Output()
	if err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}
	if string(out) != "a b\n" {
		t.Errorf("testtool echo printed %q", out)
	}
	if filepath.Base(bin) != "testtool" || !strings.HasPrefix(bin, os.TempDir()) {
		t.Errorf("binary at %s, want a testtool in the temporary folder", bin)
	}
	if again := Binary(t, TestToolPkg); again != bin {
		t.Errorf("second Binary = %s, want the first build %s", again, bin)
	}
	if _, err := binary("./no/such/package"); err == nil || !strings.Contains(err.Error(), "go build ./no/such/package") {
		t.Errorf("building a missing package: %v", err)
	}
}
