package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/wire"
	"github.com/kbase/cts/shared/manifest"
	"github.com/kbase/cts/shared/protocol"
)

// writeJobOutputs writes a job view whose outputs are too many for the job document: the
// view's JSON with "outputs" appended, streamed in file order from the job's inline outputs
// and its containers' outputs manifests, each manifest checked against its seal as it is
// read. Memory stays constant whatever the count. An error before the first output is an
// ordinary error response; after it the connection is cut, so a client never takes a
// partial list for the whole.
func (s *Server) writeJobOutputs(w http.ResponseWriter, r *http.Request, view any, j *jobs.Job) {
	head, err := json.Marshal(view)
	if err != nil || len(head) < 2 || head[len(head)-1] != '}' {
		s.fail(w, r, fmt.Errorf("render job %s: %v", j.ID, err))
		return
	}
	srcs, _, _, closeSrcs := ingest.Sources(r.Context(), ingest.StreamOpener(s.logs), [][]jobs.Output{j.Outputs}, []int{-1}, j.OutputsManifests)
	defer closeSrcs()
	var bw *bufio.Writer
	n := 0
	err = manifest.Merge(srcs, func(_ int, e protocol.ManifestEntry) error {
		if bw == nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(200)
			bw = bufio.NewWriterSize(w, 64<<10)
			bw.Write(head[:len(head)-1])
			bw.WriteString(`,"outputs":[`)
		} else {
			bw.WriteByte(',')
		}
		n++
		b, err := json.Marshal(wire.S3File{File: e.File, CRC64NVME: e.CRC64NVME})
		if err != nil {
			return err
		}
		_, err = bw.Write(b)
		return err
	})
	if err == nil && j.OutputFileCount != nil && n != *j.OutputFileCount {
		err = fmt.Errorf("job %s: %d outputs read, %d recorded", j.ID, n, *j.OutputFileCount)
	}
	if bw == nil {
		if err == nil {
			err = errors.New("no outputs")
		}
		s.fail(w, r, fmt.Errorf("read the outputs of job %s: %w", j.ID, err))
		return
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "job outputs cut short", "job_id", j.ID, "outputs_sent", n, "error", err)
		panic(http.ErrAbortHandler)
	}
	bw.WriteString("]}\n")
	_ = bw.Flush()
}
