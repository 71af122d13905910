package untar_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/kbase/cts/agent/internal/untar"
	"github.com/kbase/cts/shared/checksum"
)

// errNone marks cases that must succeed (while staying inside the root).
var errNone = errors.New("no error")

func TestNewValidates(t *testing.T) {
	s := newSandbox(t)
	for name, o := range map[string]untar.Options{
		"no bytes":     opts(untar.Tree, 0, 1),
		"no entries":   opts(untar.Layers, 1, 0),
		"unknown mode": opts(untar.Mode(7), 1, 1),
	} {
		if _, err := untar.New(s.root, o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	if _, err := untar.New(nil, opts(untar.Tree, 1, 1)); err == nil {
		t.Error("New accepted a nil root")
	}
}

func TestTree(t *testing.T) {
	s := newSandbox(t)
	archive := tarOf(t,
		dir("db/"),
		file("db/a.fa", ">a\nACGT\n"),
		ent{name: "./db/sub/b.idx", data: "index", mode: 0o755},
		symlink("db/latest", "sub/b.idx"),
		hardlink("db/hard", "db/a.fa"),
		file("db/.wh.not-a-whiteout", "kept"),
	)
	x, err := s.extract(t, opts(untar.Tree, 1<<20, 100), gz(t, archive))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"db/", "db/.wh.not-a-whiteout", "db/a.fa", "db/hard", "db/latest -> sub/b.idx", "db/sub/", "db/sub/b.idx"}
	if got := s.tree(t); !slices.Equal(got, want) {
		t.Fatalf("tree\n got %q\nwant %q", got, want)
	}
	for _, f := range x.Files() {
		b, err := os.ReadFile(filepath.Join(s.rootDir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if f.Size != int64(len(b)) || f.CRC64NVME != checksum.Encode(checksum.Sum(b)) {
			t.Errorf("%+v does not match the file", f)
		}
	}
	if len(x.Files()) != 4 || !slices.Equal(x.Symlinks(), []untar.Symlink{{Path: "db/latest", Target: "sub/b.idx"}}) {
		t.Errorf("files %+v, links %+v", x.Files(), x.Symlinks())
	}
	for name, want := range map[string]fs.FileMode{"db": 0o755 | fs.ModeDir, "db/a.fa": 0o644, "db/sub/b.idx": 0o755} {
		if fi, err := os.Lstat(filepath.Join(s.rootDir, name)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v (%v)", name, fi.Mode(), want, err)
		}
	}
	// 6 headers and db/sub, created implicitly.
	if x.Entries() != 7 || x.Written() != int64(len(">a\nACGT\nindexkept")) {
		t.Errorf("entries %d, written %d", x.Entries(), x.Written())
	}
}

// treeHostile are the hostile and malformed archives refused in Tree mode (refdata's rules),
// extracted with MaxBytes 1 MiB and MaxEntries 4.
func treeHostile(t testing.TB, outside string) []struct {
	name string
	es   []ent
	raw  []byte // used instead of es when set
	want error
} {
	big := strings.Repeat("\x00", 2<<20)
	deep := strings.Repeat("d/", 2000)
	return []struct {
		name string
		es   []ent
		raw  []byte
		want error
	}{
		// The archives refdata refused before this package existed.
		{name: "dot dot", es: []ent{file("../evil", "x")}, want: untar.ErrUnsafe},
		{name: "nested dot dot", es: []ent{file("a/../../evil", "x")}, want: untar.ErrUnsafe},
		{name: "absolute", es: []ent{file("/tmp/evil", "x")}, want: untar.ErrUnsafe},
		{name: "symlink out then write through it", es: []ent{symlink("out", "../../../../../../.."+outside),
			file("out/pwned", "x")}, want: untar.ErrUnsafe},
		{name: "absolute symlink", es: []ent{symlink("etc", "/etc")}, want: untar.ErrUnsafe},
		{name: "symlink chain out", es: []ent{dir("x/"), symlink("x/y", ".."), symlink("a", "x/y/..")}, want: untar.ErrUnsafe},
		{name: "later link redirects an earlier one", es: []ent{symlink("a", "x/y/../.."), dir("x/"), symlink("x/y", "..")},
			want: untar.ErrUnsafe},
		{name: "hard link to /etc/passwd", es: []ent{hardlink("passwd", "/etc/passwd")}, want: untar.ErrUnsafe},
		{name: "hard link up", es: []ent{hardlink("passwd", "../../../etc/passwd")}, want: untar.ErrUnsafe},
		{name: "hard link to a later entry", es: []ent{hardlink("l", "f"), file("f", "x")}, want: untar.ErrUnsafe},
		{name: "device", es: []ent{{name: "null", typ: tar.TypeChar}}, want: untar.ErrUnsafe},
		{name: "fifo", es: []ent{{name: "fifo", typ: tar.TypeFifo}}, want: untar.ErrUnsafe},
		{name: "duplicate", es: []ent{file("f", "1"), file("f", "2")}, want: untar.ErrUnsafe},
		{name: "file over a symlink", es: []ent{file("f", "1"), symlink("s", "f"), file("s", "2")}, want: untar.ErrUnsafe},
		{name: "reserved name", es: []ent{file(".cts-manifest.json", "{}")}, want: untar.ErrUnsafe},
		{name: "too many bytes", es: []ent{file("zeros", big)}, want: untar.ErrTooLarge},
		{name: "too many files", es: []ent{file("1", ""), file("2", ""), file("3", ""), file("4", ""), file("5", "")},
			want: untar.ErrTooLarge},
		// Added with this package.
		{name: "directories count", es: []ent{dir("1/"), dir("2/"), dir("3/"), dir("4/"), dir("5/")}, want: untar.ErrTooLarge},
		{name: "implicit parents count", es: []ent{dir(deep)}, want: untar.ErrTooLarge},
		{name: "implicit parents of a file count", es: []ent{file("a/b/c/d/f", "x")}, want: untar.ErrTooLarge},
		{name: "name longer than PATH_MAX", es: []ent{dir(strings.Repeat("d/", 20000))}, want: untar.ErrUnsafe},
		{name: "component longer than NAME_MAX", es: []ent{file(strings.Repeat("n", 256), "x")}, want: untar.ErrUnsafe},
		{name: "symlink over a file", es: []ent{file("f", "1"), symlink("f", "g")}, want: untar.ErrUnsafe},
		{name: "directory over a file", es: []ent{file("f", "1"), dir("f/")}, want: untar.ErrUnsafe},
		{name: "header larger than the bound", raw: rawTar(rawHeader("huge", tar.TypeReg, 1<<40, 0o644)), want: untar.ErrTooLarge},
		{name: "bytes after the end count", raw: append(tarOf(t, file("f", "x")), big...), want: untar.ErrTooLarge},
		{name: "file named like the root", raw: rawTar(rawEntry("./", tar.TypeReg, "x")), want: untar.ErrUnsafe},
	}
}

func TestTreeHostile(t *testing.T) {
	for _, c := range treeHostile(t, t.TempDir()) {
		t.Run(c.name, func(t *testing.T) {
			s := newSandbox(t)
			archive := c.raw
			if archive == nil {
				archive = tarOf(t, c.es...)
			}
			o := opts(untar.Tree, 1<<20, 4)
			o.Reserved = []string{".cts-manifest.json"}
			_, err := s.extract(t, o, gz(t, archive))
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			s.untouched(t)
		})
	}
}

func TestLayers(t *testing.T) {
	cases := []struct {
		name   string
		layers [][]ent
		want   []string
	}{
		{
			name:   "parents are created when the tar omits them",
			layers: [][]ent{{file("a/b/c.txt", "c")}},
			want:   []string{"a/", "a/b/", "a/b/c.txt"},
		},
		{
			name:   "symlinks are kept as they are, absolute or not",
			layers: [][]ent{{file("bin/real", "x"), symlink("bin/abs", "/etc/passwd"), symlink("bin/rel", "real")}},
			want:   []string{"bin/", "bin/abs -> /etc/passwd", "bin/real", "bin/rel -> real"},
		},
		{
			name: "whiteouts delete lower entries",
			layers: [][]ent{
				{file("a/x", "1"), file("a/y", "2"), file("b/z", "3")},
				{file("a/.wh.x", ""), file(".wh.b", "")},
			},
			want: []string{"a/", "a/y"},
		},
		{
			name: "opaque directory hides lower entries, marker first",
			layers: [][]ent{
				{file("d/old", "1"), file("d/sub/old2", "2"), file("keep", "k")},
				{dir("d/"), file("d/.wh..wh..opq", ""), file("d/new", "n"), file("d/sub/new2", "n")},
			},
			want: []string{"d/", "d/new", "d/sub/", "d/sub/new2", "keep"},
		},
		{
			name: "opaque directory hides lower entries, marker last",
			layers: [][]ent{
				{file("d/old", "1"), file("d/sub/old2", "2")},
				{file("d/new", "n"), file("d/sub/new2", "n"), file("d/.wh..wh..opq", "")},
			},
			want: []string{"d/", "d/new", "d/sub/", "d/sub/new2"},
		},
		{
			name: "a file replaces a directory and a symlink, and is not written through it",
			layers: [][]ent{
				{file("d/inner", "1"), file("target", "t"), symlink("link", "target")},
				{file("d", "now a file"), file("link", "now a file")},
			},
			want: []string{"d", "link", "target"},
		},
		{
			name:   "a file replaces an earlier file of the same layer",
			layers: [][]ent{{file("f", "1"), file("f", "2")}},
			want:   []string{"f"},
		},
		{
			name:   "device nodes and fifos are skipped",
			layers: [][]ent{{{name: "dev/null", typ: tar.TypeChar}, {name: "dev/sda", typ: tar.TypeBlock}, {name: "fifo", typ: tar.TypeFifo}, file("f", "x")}},
			want:   []string{"dev/", "f"},
		},
		{
			name:   "hard links",
			layers: [][]ent{{file("a", "shared"), hardlink("b", "a"), hardlink("./c", "/a")}},
			want:   []string{"a", "b", "c"},
		},
		{
			name:   "symlinked directories are followed inside the root",
			layers: [][]ent{{dir("usr/lib/"), symlink("lib", "usr/lib")}, {file("lib/x/y", "z")}},
			want:   []string{"lib -> usr/lib", "usr/", "usr/lib/", "usr/lib/x/", "usr/lib/x/y"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			var layers [][]byte
			for _, l := range tc.layers {
				layers = append(layers, gz(t, tarOf(t, l...)))
			}
			var skipped []string
			o := opts(untar.Layers, 1<<20, 1000)
			o.OnSkip = func(name string, typ byte) { skipped = append(skipped, name) }
			x, err := s.extract(t, o, layers...)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.tree(t); !slices.Equal(got, tc.want) {
				t.Errorf("tree\n got %q\nwant %q", got, tc.want)
			}
			if b, err := os.ReadFile(filepath.Join(s.rootDir, "target")); err == nil && string(b) != "t" {
				t.Errorf("written through a symlink: target = %q", b)
			}
			if x.Skipped() != len(skipped) {
				t.Errorf("Skipped() %d, OnSkip called for %q", x.Skipped(), skipped)
			}
			s.untouched(t)
		})
	}
}

func TestLayersAttributes(t *testing.T) {
	s := newSandbox(t)
	l := tarOf(t,
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o711, uid: 7, gid: 8},
		ent{name: "bin/suid", data: "x", mode: 0o4755, uid: 1000, gid: 1001},
		ent{name: "bin/ro", data: "y", mode: 0o400},
		ent{name: "bin/link", link: "suid", typ: tar.TypeSymlink, uid: 5, gid: 6},
		ent{name: "bin/hard", link: "bin/suid", typ: tar.TypeLink},
	)
	if _, err := s.extract(t, opts(untar.Layers, 1<<20, 100), zst(t, l)); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	check := func(name string, mode fs.FileMode, uid, gid uint32) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(s.rootDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if mode != 0 && fi.Mode()&(fs.ModePerm|fs.ModeSetuid) != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), mode)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if root && (st.Uid != uid || st.Gid != gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, uid, gid)
		}
	}
	dirMode := fs.FileMode(0o711)
	if !root {
		dirMode = 0o711 | 0o700
	}
	check("bin", dirMode, 7, 8)
	check("bin/suid", 0o755|fs.ModeSetuid, 1000, 1001)
	check("bin/ro", 0o400, 0, 0)
	check("bin/link", 0, 5, 6)
	fi, err := os.Stat(filepath.Join(s.rootDir, "bin/ro"))
	if err != nil || !fi.ModTime().Equal(mtime) {
		t.Errorf("mtime %v, want %v (%v)", fi.ModTime(), mtime, err)
	}
	a, _ := os.Stat(filepath.Join(s.rootDir, "bin/suid"))
	b, _ := os.Stat(filepath.Join(s.rootDir, "bin/hard"))
	if !os.SameFile(a, b) {
		t.Error("hard link is a copy")
	}
}

func TestLayersHostile(t *testing.T) {
	deep := strings.Repeat("d/", 2000)
	cases := []struct {
		name   string
		layers func(outside string) [][]ent
		want   error
	}{
		{"dot-dot name", func(string) [][]ent { return [][]ent{{file("../escape", "x")}} }, untar.ErrUnsafe},
		{"dot-dot inside name", func(string) [][]ent { return [][]ent{{file("a/../../escape", "x")}} }, untar.ErrUnsafe},
		{"absolute name", func(o string) [][]ent { return [][]ent{{file(o+"/abs", "x")}} }, untar.ErrUnsafe},
		{"file through an absolute symlink", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o), file("evil/pwned", "x")}}
		}, untar.ErrUnsafe},
		{"file through an absolute symlink in a later layer", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o)}, {file("evil/pwned", "x")}}
		}, untar.ErrUnsafe},
		{"file through a climbing relative symlink", func(string) [][]ent {
			return [][]ent{{symlink("up", "../../../../../../../../.."), file("up/tmp/pwned", "x")}}
		}, untar.ErrUnsafe},
		{"symlink to the victim then overwrite", func(o string) [][]ent {
			return [][]ent{{symlink("v", o+"/victim")}, {file("v", "overwritten")}}
		}, errNone},
		{"hard link out", func(string) [][]ent { return [][]ent{{hardlink("h", "../outside/victim")}} }, untar.ErrUnsafe},
		{"hard link through an absolute symlink", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o), hardlink("h", "evil/victim")}}
		}, untar.ErrUnsafe},
		{"whiteout through an absolute symlink", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o)}, {file("evil/.wh.victim", "")}}
		}, untar.ErrUnsafe},
		{"opaque through an absolute symlink", func(o string) [][]ent {
			return [][]ent{{symlink("evil", o)}, {file("evil/.wh..wh..opq", "")}}
		}, untar.ErrUnsafe},
		{"whiteout of dot-dot", func(string) [][]ent { return [][]ent{{file("a/.wh...", "")}} }, untar.ErrUnsafe},
		{"symlink without a target", func(string) [][]ent { return [][]ent{{symlink("s", "")}} }, untar.ErrUnsafe},
		{"implicit parents count", func(string) [][]ent { return [][]ent{{file(deep+"f", "x")}} }, untar.ErrTooLarge},
		{"too many entries across layers", func(string) [][]ent {
			return [][]ent{{file("1", ""), file("2", "")}, {file("3", ""), file("4", "")}, {file("5", "")}}
		}, untar.ErrTooLarge},
		{"too many bytes across layers", func(string) [][]ent {
			return [][]ent{{file("a", strings.Repeat("a", 600<<10))}, {file("b", strings.Repeat("b", 600<<10))}}
		}, untar.ErrTooLarge},
		{"name longer than PATH_MAX", func(string) [][]ent { return [][]ent{{dir(strings.Repeat("d/", 20000))}} },
			untar.ErrUnsafe},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			var layers [][]byte
			for _, l := range tc.layers(s.outside) {
				layers = append(layers, tarOf(t, l...))
			}
			_, err := s.extract(t, opts(untar.Layers, 1<<20, 4), layers...)
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

// TestEntriesCountedBeforeCreation: a name thousands of levels deep is refused before a single
// directory is made (it used to count as one entry and create them all).
func TestEntriesCountedBeforeCreation(t *testing.T) {
	for _, mode := range []untar.Mode{untar.Tree, untar.Layers} {
		t.Run(mode.String(), func(t *testing.T) {
			s := newSandbox(t)
			_, err := s.extract(t, opts(mode, 1<<20, 5), tarOf(t, dir(strings.Repeat("d/", 2000))))
			if !errors.Is(err, untar.ErrTooLarge) {
				t.Fatalf("err = %v", err)
			}
			if got := s.tree(t); len(got) != 0 {
				t.Errorf("created %d entries before refusing", len(got))
			}
		})
	}
}

// TestLegacyTypeflag: the pre-POSIX type flag '\x00' is a regular file, or a directory when the
// name ends in "/", in both modes.
func TestLegacyTypeflag(t *testing.T) {
	archive := rawTar(rawEntry("legacy", 0, "old data"), rawEntry("olddir/", 0, ""), rawEntry("olddir/in", 0, "x"),
		rawEntry("contiguous", tar.TypeCont, "cont"))
	for _, mode := range []untar.Mode{untar.Tree, untar.Layers} {
		t.Run(mode.String(), func(t *testing.T) {
			s := newSandbox(t)
			if _, err := s.extract(t, opts(mode, 1<<20, 100), archive); err != nil {
				t.Fatal(err)
			}
			want := []string{"contiguous", "legacy", "olddir/", "olddir/in"}
			if got := s.tree(t); !slices.Equal(got, want) {
				t.Fatalf("tree %q, want %q", got, want)
			}
			if b, err := os.ReadFile(filepath.Join(s.rootDir, "legacy")); err != nil || string(b) != "old data" {
				t.Errorf("legacy = %q %v", b, err)
			}
		})
	}
}

func TestCompressions(t *testing.T) {
	raw := tarOf(t, file("f", "content"))
	for name, b := range map[string][]byte{"tar": raw, "gzip": gz(t, raw), "zstd": zst(t, raw)} {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			if _, err := s.extract(t, opts(untar.Layers, 1<<20, 10), b); err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(s.rootDir, "f")); err != nil || string(got) != "content" {
				t.Errorf("f = %q %v", got, err)
			}
		})
	}
	t.Run("corrupt gzip trailer", func(t *testing.T) {
		b := gz(t, raw)
		b[len(b)-6] ^= 0xff // the CRC-32 of the trailer
		s := newSandbox(t)
		if _, err := s.extract(t, opts(untar.Tree, 1<<20, 10), b); err == nil {
			t.Fatal("a corrupt gzip trailer was accepted")
		}
	})
}

func TestWriteFile(t *testing.T) {
	s := newSandbox(t)
	x, err := untar.New(s.root, opts(untar.Tree, 10, 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := x.WriteFile(context.Background(), "ref.fa", strings.NewReader(">a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fs := x.Files(); len(fs) != 1 || fs[0].Size != 3 || fs[0].CRC64NVME != checksum.Encode(checksum.Sum([]byte(">a\n"))) {
		t.Errorf("files %+v", fs)
	}
	if err := x.WriteFile(context.Background(), "big", strings.NewReader("0123456789"), 0o644); !errors.Is(err, untar.ErrTooLarge) {
		t.Errorf("over the byte bound: %v", err)
	}
	if err := x.WriteFile(context.Background(), "third", strings.NewReader(""), 0o644); !errors.Is(err, untar.ErrTooLarge) {
		t.Errorf("over the entry bound: %v", err)
	}
}

func TestCanceled(t *testing.T) {
	s := newSandbox(t)
	x, err := untar.New(s.root, opts(untar.Layers, 1<<20, 10))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := x.Extract(ctx, bytes.NewReader(tarOf(t, file("a", "x")))); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 256 << 30: "256 GiB",
		1 << 40: "1 TiB"} {
		if got := untar.Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
