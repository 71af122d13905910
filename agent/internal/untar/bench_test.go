package untar_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/kbase/cts/agent/internal/untar"
)

// realisticLayer builds a tar stream shaped like a distribution's base layer (debian:bookworm's
// holds about 6,500 files, 900 directories and 1,500 symlinks in 117 MB): file sizes log-normal
// around 4 KiB with a tail of MiB-sized libraries, contents half text-like and half random
// (so gzip shrinks it about 2.5 times, like binaries and text together), one directory per
// ten files, one symlink per four files. scale 1 is about 48 MiB.
func realisticLayer(tb testing.TB, scale float64) (raw []byte, files int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	words := []byte("usr lib share doc bin the of and to in is that for it as with was on be by this libc so config\n")
	n := int(2600 * scale)
	dirs := []string{"usr/", "usr/lib/", "usr/share/", "usr/bin/", "etc/"}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range n {
		if i%10 == 0 {
			d := fmt.Sprintf("%sd%d/", dirs[rng.IntN(len(dirs))], i)
			dirs = append(dirs, d)
			if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
				tb.Fatal(err)
			}
		}
		size := int(math.Min(math.Exp(rng.NormFloat64()*1.6+8.3), 8<<20)) // median ~4 KiB
		data := make([]byte, size)
		for j := range data {
			if j%2048 < 1024 {
				data[j] = words[(i+j)%len(words)]
			} else {
				data[j] = byte(rng.Uint32())
			}
		}
		name := fmt.Sprintf("%sf%d", dirs[rng.IntN(len(dirs))], i)
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size), ModTime: mtime}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			tb.Fatal(err)
		}
		if i%4 == 0 {
			if err := tw.WriteHeader(&tar.Header{Name: name + ".link", Linkname: fmt.Sprintf("f%d", i), Typeflag: tar.TypeSymlink,
				ModTime: mtime}); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), n
}

// BenchmarkExtract measures extraction of a realistic image layer; MB/s counts the
// uncompressed tar bytes. Run: go test -run '^$' -bench Extract -benchtime 5x ./agent/internal/untar/
func BenchmarkExtract(b *testing.B) {
	raw, files := realisticLayer(b, 1)
	b.Logf("layer: %d files, %.1f MiB tar, %.1f MiB gzip", files, float64(len(raw))/(1<<20), float64(len(gz(b, raw)))/(1<<20))
	for _, c := range []struct {
		name string
		mode untar.Mode
		data []byte
	}{
		{"layers/plain", untar.Layers, raw},
		{"layers/gzip", untar.Layers, gz(b, raw)},
		{"layers/zstd", untar.Layers, zst(b, raw)},
		{"tree/gzip", untar.Tree, gz(b, raw)}, // every file fsynced and checksummed
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			base := b.TempDir()
			i := 0
			for b.Loop() {
				b.StopTimer()
				dir := fmt.Sprintf("%s/%d", base, i)
				i++
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				root, err := os.OpenRoot(dir)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				x, err := untar.New(root, opts(c.mode, 1<<30, 1<<20))
				if err != nil {
					b.Fatal(err)
				}
				r, err := untar.Decompress(bytes.NewReader(c.data), untar.Detect)
				if err != nil {
					b.Fatal(err)
				}
				if err := x.Extract(context.Background(), r); err != nil {
					b.Fatal(err)
				}
				r.Close()
				b.StopTimer()
				root.Close()
				if err := untar.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
