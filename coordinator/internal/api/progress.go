package api

import (
	"net/http"
	"sort"

	"github.com/kbase/cts/coordinator/internal/agentws"
)

// ProgressSource is the source of the agents' transfer progress: the agent endpoint keeps the
// latest report of each container (agentws.Handler implements it).
type ProgressSource interface {
	// Progress returns the latest progress of each of the job's containers, by number (nil
	// when none is known).
	Progress(jobID string) map[int]agentws.ContainerProgress
}

// ContainerProgress is one container's latest transfer progress in GET /jobs/{id}/progress.
type ContainerProgress struct {
	Container int `json:"container"`
	// Phase is "download" (the inputs) or "upload" (the outputs).
	Phase      string    `json:"phase"`
	BytesDone  int64     `json:"bytes_done"`
	BytesTotal int64     `json:"bytes_total"`
	FilesDone  int       `json:"files_done"`
	FilesTotal int       `json:"files_total"`
	Updated    Timestamp `json:"updated"`
}

// JobProgress is GET /jobs/{id}/progress.
type JobProgress struct {
	// Containers lists the containers whose progress is known, by container number; empty
	// when none is.
	Containers []ContainerProgress `json:"containers"`
}

// progressSummary describes the progress route.
const progressSummary = "The latest transfer progress of each container (inputs downloading, outputs uploading), " +
	"as its agent last reported it (about once a second). Best effort: kept in memory by the coordinator replica the " +
	"agent is connected to, so the list may be empty or miss containers (it is never an error)."

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
	out := JobProgress{Containers: []ContainerProgress{}}
	if s.cfg.Progress != nil {
		for n, cp := range s.cfg.Progress.Progress(j.ID) {
			out.Containers = append(out.Containers, ContainerProgress{Container: n, Phase: cp.Phase,
				BytesDone: cp.BytesDone, BytesTotal: cp.BytesTotal, FilesDone: cp.FilesDone, FilesTotal: cp.FilesTotal,
				Updated: Timestamp(cp.Updated)})
		}
		sort.Slice(out.Containers, func(a, b int) bool { return out.Containers[a].Container < out.Containers[b].Container })
	}
	writeJSON(w, http.StatusOK, out)
}

var _ ProgressSource = (*agentws.Handler)(nil)
