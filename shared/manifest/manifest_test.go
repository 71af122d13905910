package manifest_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/manifest"
	"github.com/kbase/cts/shared/manifest/manifesttest"
	"github.com/kbase/cts/shared/protocol"
)

func entries(n int, prefix string) []protocol.ManifestEntry {
	es := make([]protocol.ManifestEntry, n)
	for i := range es {
		es[i] = protocol.ManifestEntry{File: fmt.Sprintf("%sf%07d", prefix, i), Size: int64(i), CRC64NVME: checksum.Encode(uint64(i))}
	}
	return es
}

func readAll(b []byte, seal protocol.OutputsManifest) ([]protocol.ManifestEntry, error) {
	r := manifest.NewReader(bytes.NewReader(b), seal)
	var out []protocol.ManifestEntry
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func TestRoundTrip(t *testing.T) {
	es := entries(1000, "b/out/")
	b, seal := manifesttest.Sealed(t, es)
	if seal.Count != 1000 || seal.Size != int64(len(b)) {
		t.Fatalf("seal %+v for %d bytes", seal, len(b))
	}
	got, err := readAll(b, seal)
	if err != nil || len(got) != 1000 || got[999] != es[999] {
		t.Fatalf("read back %d entries: %v", len(got), err)
	}
}

// TestTampered: every change to the bytes or the seal is refused.
func TestTampered(t *testing.T) {
	es := entries(10, "b/out/")
	b, seal := manifesttest.Sealed(t, es)
	lines := strings.SplitAfter(string(b), "\n")
	cases := map[string]struct {
		b    string
		seal protocol.OutputsManifest
	}{
		"a checksum changed": {strings.Replace(string(b), es[3].CRC64NVME, checksum.Encode(99), 1), seal},
		"a line dropped":     {strings.Join(append(lines[:4:4], lines[5:]...), ""), seal},
		"a line added":       {string(b) + `{"file":"b/out/z","size":1,"crc64nvme":"AAAAAAAAAAA="}` + "\n", seal},
		"truncated":          {string(b[:len(b)-5]), seal},
		"reordered":          {lines[1] + lines[0] + strings.Join(lines[2:], ""), seal},
		"a duplicate":        {lines[0] + lines[0] + strings.Join(lines[2:], ""), seal},
		"a field added":      {strings.Replace(string(b), `"size"`, `"x":1,"size"`, 1), seal},
		"two values a line":  {strings.Replace(string(b), "}\n", "} {}\n", 1), seal},
		"other seal count":   {string(b), protocol.OutputsManifest{Count: 9, Size: seal.Size, CRC64NVME: seal.CRC64NVME}},
		"other seal crc":     {string(b), protocol.OutputsManifest{Count: 10, Size: seal.Size, CRC64NVME: checksum.Encode(1)}},
		"a too long line":    {`{"file":"` + strings.Repeat("a", manifest.MaxLine) + `"}` + "\n", seal},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := readAll([]byte(c.b), c.seal); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestWriterOrder(t *testing.T) {
	w := manifest.NewWriter(io.Discard)
	if err := w.Add(protocol.ManifestEntry{File: "b/x"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"b/x", "b/a"} {
		if err := w.Add(protocol.ManifestEntry{File: f}); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("add %s after b/x: %v", f, err)
		}
	}
}

func TestMerge(t *testing.T) {
	a := []protocol.ManifestEntry{{File: "b/1", CRC64NVME: "x"}, {File: "b/3", CRC64NVME: "x"}}
	b := []protocol.ManifestEntry{{File: "b/2", CRC64NVME: "x"}, {File: "b/3", CRC64NVME: "x"}, {File: "b/4", CRC64NVME: "x"}}
	var got []string
	err := manifest.Merge([]manifest.Source{manifest.SliceSource(a), manifest.SliceSource(b)}, func(src int, e protocol.ManifestEntry) error {
		got = append(got, fmt.Sprintf("%d:%s", src, e.File))
		return nil
	})
	if err != nil || strings.Join(got, " ") != "0:b/1 1:b/2 0:b/3 1:b/4" {
		t.Fatalf("merge: %v %v", got, err)
	}
	b[1].CRC64NVME = "y"
	err = manifest.Merge([]manifest.Source{manifest.SliceSource(a), manifest.SliceSource(b)}, func(int, protocol.ManifestEntry) error { return nil })
	var ce *manifest.CollisionError
	if !errors.As(err, &ce) || ce.File != "b/3" || ce.A != 0 || ce.B != 1 {
		t.Fatalf("collision: %v", err)
	}
}

// BenchmarkRead reads a 100,000-output manifest: the coordinator's per-output cost before
// the HeadObject calls.
func BenchmarkRead(b *testing.B) {
	data, seal := manifesttest.Sealed(b, entries(100_000, "cts-data/user/output/dir/"))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r := manifest.NewReader(bytes.NewReader(data), seal)
		for {
			if _, err := r.Next(); err != nil {
				if !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
				break
			}
		}
	}
}
