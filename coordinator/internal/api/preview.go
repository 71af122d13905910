package api

import (
	"bytes"
	"net/http"

	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/wire"
)

const previewSummary = "Check a job as POST /jobs does (the same validation and the same errors) without submitting it, " +
	"and show what each container would run: its command line, environment and input paths (an addition to the CTS API)."

// preview serves POST /jobs/preview: a dry run of submit.
func (s *Server) preview(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	opts := jobinput.DefaultOptions()
	opts.Sites = s.jobs.Sites.Names()
	in, err := jobinput.Decode(bytes.NewReader(body), opts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	runs, err := s.jobs.Admission.Preview(r.Context(), jobsUser(u), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.JobPreview{Containers: make([]wire.ContainerRun, 0, len(runs))}
	for _, c := range runs {
		env := c.Env
		if env == nil {
			env = []string{}
		}
		out.Containers = append(out.Containers, wire.ContainerRun{Container: c.Container, Command: c.Command, Env: env, InputFiles: c.Inputs})
	}
	writeJSON(w, http.StatusOK, out)
}
