package container

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/kbase/cts/agent/internal/untar"
)

// ent is one tar entry; typ defaults to a regular file (or a directory when name ends in /).
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

func blobOf(b []byte) layerBlob {
	sum := sha256.Sum256(b)
	return layerBlob{
		digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])},
		size:   int64(len(b)),
		open:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
	}
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
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
// victim file, so tests can check nothing escapes.
type sandbox struct {
	rootDir, outside string
	root             *os.Root
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{rootDir: filepath.Join(base, "rootfs"), outside: filepath.Join(base, "outside")}
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
	t.Cleanup(func() { r.Close() })
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

func (s *sandbox) apply(t testing.TB, limit int64, layers ...[]byte) error {
	t.Helper()
	u := newUnpacker(s.root, limit, slog.New(slog.DiscardHandler))
	for _, l := range layers {
		if err := u.applyBlob(context.Background(), blobOf(l)); err != nil {
			return err
		}
	}
	return nil
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

// The layer semantics (whiteouts, replacement, attributes, hard links, skipped devices) are
// tested in agent/internal/untar; these tests check what applyBlob adds: the digest, the
// compression detection and the errors callers branch on.

func TestUnpackWhiteout(t *testing.T) {
	s := newSandbox(t)
	err := s.apply(t, 1<<20, gz(t, tarOf(t, file("a/x", "1"), file("a/y", "2"))), zst(t, tarOf(t, file("a/.wh.x", ""))))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.tree(t); !slices.Equal(got, []string{"a/", "a/y"}) {
		t.Errorf("tree %q", got)
	}
}

func TestUnpackCompressions(t *testing.T) {
	raw := tarOf(t, file("f", "content"))
	for name, b := range map[string][]byte{"tar": raw, "gzip": gz(t, raw), "zstd": zst(t, raw)} {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			if err := s.apply(t, 1<<20, b); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(s.rootDir, "f")); err != nil || string(got) != "content" {
				t.Errorf("f = %q %v", got, err)
			}
		})
	}
}

func TestUnpackHostile(t *testing.T) {
	// outsideAbs is filled per case with the sandbox's real outside directory.
	cases := []struct {
		name   string
		layers func(outside string) [][]ent
		want   error // nil: any error
	}{
		{"dot-dot name", func(string) [][]ent { return [][]ent{{file("../escape", "x")}} }, ErrUnsafeLayer},
		{"dot-dot inside name", func(string) [][]ent { return [][]ent{{file("a/../../escape", "x")}} }, ErrUnsafeLayer},
		{"absolute name", func(o string) [][]ent { return [][]ent{{file(o+"/abs", "x")}} }, ErrUnsafeLayer},
		{"file through an absolute symlink", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o), file("evil/pwned", "x")}}
		}, ErrUnsafeLayer},
		{"file through an absolute symlink in a later layer", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o)}, {file("evil/pwned", "x")}}
		}, ErrUnsafeLayer},
		{"file through a climbing relative symlink", func(string) [][]ent {
			return [][]ent{{symlink("up", "../../../../../../../../.."), file("up/tmp/pwned", "x")}}
		}, ErrUnsafeLayer},
		{"symlink to the victim then overwrite", func(o string) [][]ent {
			return [][]ent{{symlink("v", o+"/victim")}, {file("v", "overwritten")}}
		}, errNone},
		{"hard link out", func(string) [][]ent { return [][]ent{{hardlink("h", "../outside/victim")}} }, ErrUnsafeLayer},
		{"hard link through an absolute symlink", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o), hardlink("h", "evil/victim")}}
		}, ErrUnsafeLayer},
		{"whiteout through an absolute symlink", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o)}, {file("evil/.wh.victim", "")}}
		}, ErrUnsafeLayer},
		{"opaque through an absolute symlink", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o)}, {file("evil/.wh..wh..opq", "")}}
		}, ErrUnsafeLayer},
		{"whiteout of dot-dot", func(string) [][]ent { return [][]ent{{file("a/.wh...", "")}} }, ErrUnsafeLayer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			var layers [][]byte
			for _, l := range tc.layers(s.outside) {
				layers = append(layers, tarOf(t, l...))
			}
			err := s.apply(t, 1<<20, layers...)
			switch {
			case tc.want == errNone && err != nil:
				t.Errorf("err %v, want none", err)
			case tc.want != errNone && !errors.Is(err, tc.want):
				t.Errorf("err %v, want %v", err, tc.want)
			}
			s.untouched(t)
		})
	}
}

// errNone marks cases that must succeed (while staying inside the root).
var errNone = errors.New("no error")

func TestUnpackLimits(t *testing.T) {
	t.Run("size bound", func(t *testing.T) {
		s := newSandbox(t)
		err := s.apply(t, 10, tarOf(t, file("a", "12345")), tarOf(t, file("b", "123456")))
		if !errors.Is(err, ErrTooLarge) || !errors.Is(err, untar.ErrTooLarge) {
			t.Errorf("err %v, want ErrTooLarge", err)
		}
	})
	t.Run("a name longer than PATH_MAX", func(t *testing.T) {
		s := newSandbox(t)
		if err := s.apply(t, 1<<20, tarOf(t, dir(strings.Repeat("d/", 2100)))); !errors.Is(err, ErrUnsafeLayer) {
			t.Errorf("err %v, want ErrUnsafeLayer", err)
		}
	})
	t.Run("digest mismatch", func(t *testing.T) {
		s := newSandbox(t)
		b := blobOf(tarOf(t, file("a", "x")))
		b.digest.Hex = strings.Repeat("0", 64)
		u := newUnpacker(s.root, 1<<20, slog.New(slog.DiscardHandler))
		if err := u.applyBlob(context.Background(), b); !errors.Is(err, ErrDigestMismatch) {
			t.Errorf("err %v, want ErrDigestMismatch", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		s := newSandbox(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		u := newUnpacker(s.root, 1<<20, slog.New(slog.DiscardHandler))
		if err := u.applyBlob(ctx, blobOf(tarOf(t, file("a", "x")))); !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
	})
}

// FuzzUnpack feeds arbitrary layer bytes to the unpacker: it must never panic nor write
// outside the root.
func FuzzUnpack(f *testing.F) {
	f.Add(tarOf(f, file("a/b", "x"), symlink("l", "/"), file("l/etc/x", "y")))
	f.Add(tarOf(f, symlink("up", ".."), file("up/x", "y"), hardlink("h", "up/x")))
	f.Add(tarOf(f, dir("d/"), file("d/.wh..wh..opq", ""), file(".wh.d", "")))
	f.Add(gz(f, tarOf(f, file("../x", "y"))))
	f.Fuzz(func(t *testing.T, layer []byte) {
		s := newSandbox(t)
		_ = s.apply(t, 1<<20, layer)
		s.untouched(t)
	})
}
