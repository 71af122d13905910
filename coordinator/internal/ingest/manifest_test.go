package ingest_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/manifest/manifesttest"
	"github.com/kbase/cts/shared/protocol"
)

// sealed is manifesttest.Sealed with the seal's File set to file.
func sealed(t *testing.T, file string, es []protocol.ManifestEntry) ([]byte, *protocol.OutputsManifest) {
	t.Helper()
	body, seal := manifesttest.Sealed(t, es)
	seal.File = file
	return body, &seal
}

// TestOutputsManifest: a container with more outputs than an event carries sends a sealed
// manifest; the coordinator verifies every entry in S3 and records the count and the
// manifest, and refuses a manifest elsewhere, one altered after sealing, or one naming files
// outside the container's output folder.
func TestOutputsManifest(t *testing.T) {
	f := newFixture(t)
	const n = protocol.MaxInlineOutputs + 50
	es := make([]protocol.ManifestEntry, n)
	for i := range es {
		body := []byte(fmt.Sprintf("output %d\n", i))
		file := fmt.Sprintf("outputs/run1/many/f%05d.txt", i)
		es[i] = protocol.ManifestEntry{File: file, Size: int64(len(body)), CRC64NVME: f.Put(t, file, body)}
	}
	single := f.Put(t, "outputs/run1/single.txt", []byte("single"))
	inline := []protocol.OutputFile{{File: "outputs/run1/single.txt", CRC64NVME: single}}

	// run walks both containers of a new job to upload_submitted, has container 0 put body
	// at its manifest path and send seal (File defaulting to the right path), container 1
	// its inline output.
	run := func(t *testing.T, body []byte, seal *protocol.OutputsManifest) (string, error) {
		id := f.Submit(t, nil)
		want := ingest.ManifestPath(logDir, id, 0)
		if seal.File == "" {
			seal.File = want
		}
		f.Put(t, want, body)
		a0, a1 := f.Agent(id, 0, "x"), f.Agent(id, 1, "x")
		a0.Walk(t, running...)
		a1.Walk(t, running...)
		if err := a1.Send(t.Context(), protocol.Event{State: job.Complete, Outputs: inline}); err != nil {
			t.Fatal(err)
		}
		return id, a0.Send(t.Context(), protocol.Event{State: job.Complete, OutputsManifest: seal})
	}

	t.Run("verified and recorded", func(t *testing.T) {
		body, seal := sealed(t, "", es)
		id, err := run(t, body, seal)
		if err != nil {
			t.Fatal(err)
		}
		j := f.Job(t, id)
		if j.State != job.Complete || *j.OutputFileCount != n+1 || len(j.Outputs) != 1 || len(j.OutputsManifests) != 1 ||
			j.OutputsManifests[0].Count != n || j.OutputsManifests[0].Container != 0 {
			t.Fatalf("job %s (%s): count %v, inline %v, manifests %+v", j.State, j.AdminError, j.OutputFileCount, j.Outputs, j.OutputsManifests)
		}
	})
	t.Run("altered after sealing", func(t *testing.T) {
		body, seal := sealed(t, "", es)
		body = bytes.Replace(body, []byte("f00007.txt"), []byte("f00008.txt"), 1)
		id, err := run(t, body, seal)
		if err != nil {
			t.Fatal(err)
		}
		j := f.Job(t, id)
		if j.State != job.Error || !strings.HasPrefix(j.Error, "The list of output files container 0 reported failed verification") ||
			!strings.Contains(j.AdminError, "not sorted, or twice") {
			t.Fatalf("job %s: %q / %q", j.State, j.Error, j.AdminError)
		}
	})
	t.Run("seal of other bytes", func(t *testing.T) {
		body, _ := sealed(t, "", es)
		_, seal := sealed(t, "", es[1:])
		id, err := run(t, body, seal)
		if err != nil {
			t.Fatal(err)
		}
		if j := f.Job(t, id); j.State != job.Error || !strings.Contains(j.AdminError, "longer than its seal") {
			t.Fatalf("job %s: %q / %q", j.State, j.Error, j.AdminError)
		}
	})
	t.Run("a file outside the output folder", func(t *testing.T) {
		other := append([]protocol.ManifestEntry{{File: "inputs/in/a.txt", Size: 1, CRC64NVME: f.CRCA}}, es...)
		body, seal := sealed(t, "", other)
		id, err := run(t, body, seal)
		if err != nil {
			t.Fatal(err)
		}
		if j := f.Job(t, id); j.State != job.Error || !strings.Contains(j.AdminError, "inputs/in/a.txt is not in the container's output folder") {
			t.Fatalf("job %s: %q / %q", j.State, j.Error, j.AdminError)
		}
	})
	t.Run("a manifest elsewhere", func(t *testing.T) {
		body, seal := sealed(t, "outputs/run1/manifest.jsonl", es)
		_, err := run(t, body, seal)
		if !errors.Is(err, ingest.ErrRejected) || !strings.Contains(err.Error(), "where container 0's manifest goes") {
			t.Fatalf("event: %v", err)
		}
	})
	t.Run("too many inline outputs", func(t *testing.T) {
		id := f.Submit(t, nil)
		a0 := f.Agent(id, 0, "x")
		a0.Walk(t, running...)
		outs := make([]protocol.OutputFile, protocol.MaxInlineOutputs+1)
		for i := range outs {
			outs[i] = protocol.OutputFile{File: es[i].File, CRC64NVME: es[i].CRC64NVME}
		}
		if err := a0.Send(t.Context(), protocol.Event{State: job.Complete, Outputs: outs}); !errors.Is(err, ingest.ErrRejected) {
			t.Fatalf("event: %v", err)
		}
	})
}
