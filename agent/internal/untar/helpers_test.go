package untar_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kbase/cts/agent/internal/untar"
)

// ent is one tar entry; typ defaults to a regular file.
type ent struct {
	name, data, link string
	typ              byte
	mode             int64
	uid, gid         int
}

func file(name, data string) ent  { return ent{name: name, data: data} }
func dir(name string) ent         { return ent{name: name, typ: tar.TypeDir} }
func symlink(name, to string) ent { return ent{name: name, link: to, typ: tar.TypeSymlink} }
func hardlink(name, to string) ent {
	return ent{name: name, link: to, typ: tar.TypeLink}
}

var mtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// tarOf writes entries as a tar stream (PAX where a name needs it).
func tarOf(t testing.TB, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawHeader builds one 512-byte ustar header by hand, for type flags and sizes tar.Writer
// refuses to write ('\x00', a size larger than the data).
func rawHeader(name string, typeflag byte, size int64, mode int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], octal(mode, 8))
	copy(b[108:116], octal(0, 8))
	copy(b[116:124], octal(0, 8))
	if size < 1<<33 {
		copy(b[124:136], octal(size, 12))
	} else {
		b[124] = 0x80 // GNU base-256: sizes from 8 GiB up do not fit the octal field
		for i, n := 135, size; i > 124; i, n = i-1, n>>8 {
			b[i] = byte(n)
		}
	}
	copy(b[136:148], octal(mtime.Unix(), 12))
	b[156] = typeflag
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], octal(sum, 7)+"\x00")
	return b
}

func octal(n int64, width int) string {
	s := strconv.FormatInt(n, 8)
	for len(s) < width-1 {
		s = "0" + s
	}
	return s
}

// rawEntry is a hand-made header followed by data padded to 512 bytes.
func rawEntry(name string, typeflag byte, data string) []byte {
	b := rawHeader(name, typeflag, int64(len(data)), 0o644)
	d := []byte(data)
	if pad := len(d) % 512; pad != 0 {
		d = append(d, make([]byte, 512-pad)...)
	}
	return append(b, d...)
}

// rawTar ends hand-made entries with the two zero blocks.
func rawTar(entries ...[]byte) []byte {
	var b []byte
	for _, e := range entries {
		b = append(b, e...)
	}
	return append(b, make([]byte, 1024)...)
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(b, nil)
}

// sandbox is a root inside a parent directory that also holds an "outside" directory with a
// victim file, so tests can check that nothing escapes.
type sandbox struct {
	rootDir, outside string
	root             *os.Root
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{rootDir: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{s.rootDir, s.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.outside, "victim"), []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenRoot(s.rootDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		// Whatever the archive made, the tree must go (t.TempDir's own cleanup would fail on
		// a tree it cannot remove).
		if err := untar.RemoveAll(s.rootDir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	s.root = r
	return s
}

// untouched fails the test if anything outside the root changed.
func (s *sandbox) untouched(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir(s.outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("outside now holds %d entries", len(entries))
	}
	if b, err := os.ReadFile(filepath.Join(s.outside, "victim")); err != nil || string(b) != "original" {
		t.Errorf("victim changed: %q %v", b, err)
	}
	parent, err := os.ReadDir(filepath.Dir(s.rootDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(parent) != 2 {
		t.Errorf("the root's parent holds %d entries", len(parent))
	}
}

// extract runs one Extractor over the archives (compressed or not, detected) and Finish.
func (s *sandbox) extract(t testing.TB, opts untar.Options, archives ...[]byte) (*untar.Extractor, error) {
	t.Helper()
	x, err := untar.New(s.root, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range archives {
		r, err := untar.Decompress(bytes.NewReader(a), untar.Detect)
		if err != nil {
			return x, err
		}
		err = x.Extract(context.Background(), r)
		r.Close()
		if err != nil {
			return x, err
		}
	}
	return x, x.Finish()
}

func opts(mode untar.Mode, maxBytes int64, maxEntries int) untar.Options {
	return untar.Options{Mode: mode, Limits: untar.Limits{MaxBytes: maxBytes, MaxEntries: maxEntries}}
}

// tree lists the root as "path" / "path/" / "path -> target" lines.
func (s *sandbox) tree(t testing.TB) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(s.rootDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.rootDir, p)
		switch {
		case rel == ".":
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, rel+" -> "+target)
		case d.IsDir():
			out = append(out, rel+"/")
		default:
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
