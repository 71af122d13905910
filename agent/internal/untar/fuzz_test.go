package untar_test

import (
	"archive/tar"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbase/cts/agent/internal/untar"
	"github.com/kbase/cts/shared/checksum"
)

// FuzzExtract feeds arbitrary bytes (tar, gzip or zstd) to both modes. Whatever they hold,
// extraction must not panic, write outside the root, exceed its bounds or leave a tree
// RemoveAll cannot remove (the sandbox's cleanup checks that); a Tree extraction that succeeds
// must describe exactly what it wrote. The seed corpus is in testdata/fuzz/FuzzExtract
// (TestWriteSeedCorpus writes it).
func FuzzExtract(f *testing.F) {
	f.Fuzz(func(t *testing.T, archive []byte, layers bool) {
		s := newSandbox(t)
		mode := untar.Tree
		if layers {
			mode = untar.Layers
		}
		o := opts(mode, 1<<20, 64)
		o.Reserved = []string{".cts-manifest.json"}
		x, err := s.extract(t, o, archive)
		s.untouched(t)
		if x.Written() > 1<<20 || x.Entries() > 64 {
			t.Fatalf("bounds exceeded: %d bytes, %d entries", x.Written(), x.Entries())
		}
		if err != nil || mode != untar.Tree {
			return
		}
		for _, fl := range x.Files() {
			b, err := os.ReadFile(filepath.Join(s.rootDir, fl.Path))
			if err != nil {
				t.Fatalf("listed file %s: %v", fl.Path, err)
			}
			if int64(len(b)) != fl.Size || checksum.Encode(checksum.Sum(b)) != fl.CRC64NVME {
				t.Fatalf("listed file %s does not match its content", fl.Path)
			}
		}
		for _, l := range x.Symlinks() {
			if path.IsAbs(l.Target) {
				t.Fatalf("absolute symlink %s -> %s accepted", l.Path, l.Target)
			}
		}
	})
}

// TestWriteSeedCorpus writes the fuzz seed corpus from the test suites' archives when
// UNTAR_WRITE_SEEDS=1 (go test -run TestWriteSeedCorpus ./agent/internal/untar/).
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("UNTAR_WRITE_SEEDS") != "1" {
		t.Skip("set UNTAR_WRITE_SEEDS=1 to rewrite testdata/fuzz/FuzzExtract")
	}
	corpus := filepath.Join("testdata", "fuzz", "FuzzExtract")
	if err := os.MkdirAll(corpus, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, archive []byte, layers bool) {
		name = strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, strings.ToLower(name))
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%t)\n", archive, layers)
		if err := os.WriteFile(filepath.Join(corpus, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := "/tmp/outside"
	for _, c := range treeHostile(t, outside) {
		if strings.Contains(c.name, "bytes") || strings.Contains(c.name, "PATH_MAX") {
			continue // megabytes of zeros, or a 40 KB name: the fuzzer finds those bounds without them
		}
		archive := c.raw
		if archive == nil {
			archive = tarOf(t, c.es...)
		}
		write("tree "+c.name, archive, false)
	}
	write("tree good", gz(t, tarOf(t, dir("db/"), file("db/a", "x"), symlink("db/l", "a"), hardlink("db/h", "db/a"))), false)
	write("layers good", zst(t, tarOf(t, file("a/b", "x"), symlink("l", "/"), dir("d/"), file("d/.wh..wh..opq", ""),
		file(".wh.gone", ""), hardlink("h", "/a/b"), ent{name: "dev/null", typ: tar.TypeChar})), true)
	write("layers escape", tarOf(t, symlink("up", ".."), file("up/x", "y"), hardlink("h", "up/x"), symlink("abs", outside),
		file("abs/victim", "z")), true)
	write("layers legacy", rawTar(rawEntry("legacy", 0, "old"), rawEntry("dir/", 0, ""), rawEntry("c", tar.TypeCont, "c")), true)
	write("tree legacy", rawTar(rawEntry("legacy", 0, "old"), rawEntry("dir/", 0, ""), rawEntry("c", tar.TypeCont, "c")), false)
	write("layers deep", tarOf(t, file(strings.Repeat("d/", 100)+"f", "x")), true)
}
