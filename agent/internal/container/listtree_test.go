package container

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkCheckTree is the check a container start makes of the shared unpacked image: a
// stat of every entry and a comparison with the manifest written at unpacking. Its cost grows
// with the image's number of files (not its bytes); images of 1,000, 10,000 and 50,000 files
// (a large Python or R environment has tens of thousands), in folders of 100 files.
//
//	go test -run '^$' -bench BenchmarkCheckTree -benchmem ./agent/internal/container/
func BenchmarkCheckTree(b *testing.B) {
	for _, files := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			dir := b.TempDir()
			tree := filepath.Join(dir, "tree")
			makeTree(b, tree, files)
			listing, size, err := listTree(tree)
			if err != nil {
				b.Fatal(err)
			}
			var m bytes.Buffer
			m.WriteString(treeManifestHeader)
			fmt.Fprintf(&m, "bytes %d\n", size)
			m.Write(listing)
			if err := os.WriteFile(filepath.Join(dir, "manifest"), m.Bytes(), 0o600); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if diff, err := checkTree(dir); err != nil || diff != "" {
					b.Fatalf("check: %q %v", diff, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(files), "µs/file")
		})
	}
}

// BenchmarkListTree compares the listing a check makes (fstatat relative to each folder,
// appends) with the WalkDir form it replaced (a path lstat per entry, a formatted line), on
// the same trees in the same run.
//
//	go test -run '^$' -bench BenchmarkListTree -benchmem ./agent/internal/container/
func BenchmarkListTree(b *testing.B) {
	for _, files := range []int{10_000, 50_000} {
		tree := filepath.Join(b.TempDir(), "tree")
		makeTree(b, tree, files)
		for _, impl := range []struct {
			name string
			list func(string) ([]byte, int64, error)
		}{{"walk", listTreeWalk}, {"fstatat", listTree}} {
			b.Run(fmt.Sprintf("files=%d/%s", files, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := impl.list(tree); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(files), "µs/file")
			})
		}
	}
}

// makeTree writes files small files into tree, in folders of 100.
func makeTree(b *testing.B, tree string, files int) {
	b.Helper()
	for i := range files {
		sub := filepath.Join(tree, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d.py", i%100)), []byte("x = 1\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// listTreeWalk is listTree as first written (filepath.WalkDir, a path lstat per entry, a
// formatted line): the reference its faster form must match line for line, so trees unpacked
// by earlier agents keep matching their manifests.
func listTreeWalk(root string) (listing []byte, size int64, err error) {
	var b strings.Builder
	seen := map[uint64]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if !seen[st.Ino] {
			seen[st.Ino] = true
			size += st.Blocks * 512
		}
		fmt.Fprintf(&b, "%d %o %d %d %d %d %d %s\n", st.Ino, st.Mode, st.Uid, st.Gid, st.Size,
			st.Mtim.Nano(), st.Ctim.Nano(), strconv.Quote(filepath.ToSlash(rel)))
		return nil
	})
	return []byte(b.String()), size, err
}

// TestListTreeMatchesWalk: the listing of a tree with every kind of entry an image holds
// (nested folders, files of several sizes and modes, symbolic links to files, folders and
// nowhere, a hard link, a FIFO, names that need quoting, an empty folder) is the same, line
// for line and in size, as the WalkDir listing earlier agents wrote into their manifests.
func TestListTreeMatchesWalk(t *testing.T) {
	tree := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(tree, "usr/lib/python3/site-packages/pkg"), 0o755))
	must(os.MkdirAll(filepath.Join(tree, "empty"), 0o700))
	must(os.WriteFile(filepath.Join(tree, "usr/lib/python3/site-packages/pkg/__init__.py"), []byte("x = 1\n"), 0o644))
	must(os.WriteFile(filepath.Join(tree, "usr/lib/big"), bytes.Repeat([]byte("a"), 1<<20), 0o600))
	must(os.WriteFile(filepath.Join(tree, "usr/lib/tool"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(filepath.Join(tree, "usr/lib/tool"), 0o755|os.ModeSetuid))
	must(os.WriteFile(filepath.Join(tree, "name with \"quotes\" and\ttab"), nil, 0o644))
	must(os.WriteFile(filepath.Join(tree, "é-ü"), []byte("u"), 0o644))
	must(os.Link(filepath.Join(tree, "usr/lib/big"), filepath.Join(tree, "usr/big-link")))
	must(os.Symlink("lib/tool", filepath.Join(tree, "usr/tool-link")))
	must(os.Symlink("/usr/lib", filepath.Join(tree, "lib")))
	must(os.Symlink("nowhere", filepath.Join(tree, "dangling")))
	must(unix.Mkfifo(filepath.Join(tree, "usr/fifo"), 0o644))
	for _, name := range []string{"b", "a", "B", "a.b", "a-b", "a_b"} {
		must(os.WriteFile(filepath.Join(tree, "usr/lib/python3", name), []byte(name), 0o644))
	}
	want, wantSize, err := listTreeWalk(tree)
	must(err)
	got, gotSize, err := listTree(tree)
	must(err)
	if !bytes.Equal(got, want) || gotSize != wantSize {
		t.Fatalf("listing (size %d):\n%s\nwant (size %d):\n%s", gotSize, got, wantSize, want)
	}
	if n := bytes.Count(got, []byte("\n")); n != 23 {
		t.Errorf("%d lines, want 23:\n%s", n, got)
	}
}
