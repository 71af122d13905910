package api

import (
	"context"
	"net/http"
	"sort"

	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/wire"
)

// ProgressSource is the source of the agents' transfer progress: the agent endpoint keeps the
// latest report of each container (agentws.Handler implements it).
type ProgressSource interface {
	// Progress returns the latest progress of each of the job's containers, by number (nil
	// when none is known), whichever replica their agents are connected to.
	Progress(ctx context.Context, jobID string) map[int]agentws.ContainerProgress
}

// progressSummary describes the progress route.
const progressSummary = "The latest transfer progress of each container (inputs downloading, outputs uploading), " +
	"as its agent last reported it (about once a second). Best effort: the list may be empty or miss containers (it is " +
	"never an error); with several coordinator replicas, the first read of a job may miss the containers whose agents are " +
	"connected to another replica for a second."

// jobProgress serves GET /jobs/{job_id}/progress: the job's owner, or any admin.
func (s *Server) jobProgress(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := newParams(r)
	id := p.jobID()
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	j, err := s.jobs.Records.Get(r.Context(), jobsUser(u), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.JobProgress{Containers: []wire.ContainerProgress{}}
	if s.cfg.Progress != nil {
		for n, cp := range s.cfg.Progress.Progress(r.Context(), j.ID) {
			out.Containers = append(out.Containers, wire.ContainerProgress{Container: n, Phase: cp.Phase,
				BytesDone: cp.BytesDone, BytesTotal: cp.BytesTotal, FilesDone: cp.FilesDone, FilesTotal: cp.FilesTotal,
				Updated: wire.At(cp.Updated)})
		}
		sort.Slice(out.Containers, func(a, b int) bool { return out.Containers[a].Container < out.Containers[b].Container })
	}
	writeJSON(w, http.StatusOK, out)
}

var _ ProgressSource = (*agentws.Handler)(nil)
