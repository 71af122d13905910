// Package manifesttest makes outputs manifests for tests: the bytes a manifest.Writer writes
// for a list of entries, and their seal. It is for tests only.
package manifesttest

import (
	"bytes"
	"testing"

	"github.com/kbase/cts/shared/manifest"
	"github.com/kbase/cts/shared/protocol"
)

// Sealed writes a manifest of es, in that order, in memory and returns its bytes and its seal
// (File empty); it fails t if the writer refuses an entry (es not sorted, or a path twice).
func Sealed(t testing.TB, es []protocol.ManifestEntry) ([]byte, protocol.OutputsManifest) {
	t.Helper()
	var b bytes.Buffer
	w := manifest.NewWriter(&b)
	for _, e := range es {
		if err := w.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	seal, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), seal
}
