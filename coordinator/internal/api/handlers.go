package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/kbase/cts/coordinator/internal/auth"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/wire"
	"github.com/kbase/cts/shared/job"
)

func (s *Server) requireUser(r *http.Request) (*auth.User, error) {
	u := userOf(r)
	if u == nil && agentOf(r) != nil {
		return nil, ctserr.New(ctserr.CodeUnauthorized, "An agent credential may only report its own container or staging, over the agent routes")
	}
	if u == nil {
		return nil, ctserr.New(ctserr.CodeNoToken, "Authorization header required")
	}
	return u, nil
}

func (s *Server) requireAdmin(r *http.Request) (*auth.User, error) {
	u, err := s.requireUser(r)
	if err != nil {
		return nil, err
	}
	if !u.Admin {
		return nil, ctserr.New(ctserr.CodeUnauthorized, "User %s is not a service administrator", u.Name)
	}
	return u, nil
}

// requireLevel checks the auth level of a route.
func (s *Server) requireLevel(r *http.Request, level string) (*auth.User, error) {
	switch level {
	case authNone:
		return userOf(r), nil
	case authAdmin:
		return s.requireAdmin(r)
	case authAdminExecutor:
		u, err := s.requireUser(r)
		if err != nil {
			return nil, err
		}
		if !u.Admin && !u.Executor {
			return nil, ctserr.New(ctserr.CodeUnauthorized, "User %s is neither a service administrator nor an external executor", u.Name)
		}
		return u, nil
	case authExecutor:
		u, err := s.requireUser(r)
		if err != nil {
			return nil, err
		}
		if !u.Executor {
			return nil, ctserr.New(ctserr.CodeUnauthorized, "User %s does not have the executor role", u.Name)
		}
		return u, nil
	default:
		return s.requireUser(r)
	}
}

// headerUser looks up the user of a request's Authorization header, for the authorizers of
// routes outside the API (which the API's middleware does not see); errors are CTS errors.
func (s *Server) headerUser(r *http.Request) (*auth.User, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, ctserr.New(ctserr.CodeNoToken, "Authorization header required")
	}
	tok, err := auth.ParseAuthHeader(h)
	if err != nil {
		return nil, err
	}
	return s.auth.User(r.Context(), tok)
}

// AuthorizeExecutor is the agent websocket's authorizer: a valid token with the executor role.
func (s *Server) AuthorizeExecutor(r *http.Request) error {
	u, err := s.headerUser(r)
	if err != nil {
		return err
	}
	if !u.Executor {
		return ctserr.New(ctserr.CodeUnauthorized, "User %s does not have the executor role", u.Name)
	}
	return nil
}

// AuthorizeAdmin checks that a request outside the API (the profiling endpoint) carries a CTS
// admin's token; the error is a CTS error for WriteError.
func (s *Server) AuthorizeAdmin(r *http.Request) error {
	u, err := s.headerUser(r)
	if err != nil {
		return err
	}
	if !u.Admin {
		return ctserr.New(ctserr.CodeUnauthorized, "User %s is not a service administrator", u.Name)
	}
	return nil
}

// IsAdmin reports whether r carries a valid token of a service administrator, looked up
// within ctx: the probes, which sit beside the API, show details to admins only.
func (s *Server) IsAdmin(ctx context.Context, r *http.Request) bool {
	tok, err := auth.ParseAuthHeader(r.Header.Get("Authorization"))
	if err != nil {
		return false
	}
	u, err := s.auth.User(ctx, tok)
	return err == nil && u.Admin
}

func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, wire.ServiceInfo{
		ServiceName: ServiceName, Version: s.cfg.Version, GitHash: s.cfg.GitHash, ServerTime: wire.At(time.Now()),
		Notes: "This service is a Go re-implementation of the CDM Task Service",
	})
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v := wire.WhoAmI{User: u.Name, Roles: []string{}, AllowedPaths: []wire.AllowedPath{}}
	if u.Admin {
		v.Roles = append(v.Roles, "full_admin")
	}
	if s.cfg.Access != nil {
		for _, g := range s.cfg.Access.Grants(u.Name) {
			v.AllowedPaths = append(v.AllowedPaths, wire.AllowedPath{Path: g.Path, Perm: string(g.Perm)})
		}
	}
	writeJSON(w, 200, v)
}

func (s *Server) sites(w http.ResponseWriter, r *http.Request) {
	out := wire.Sites{Sites: []wire.Site{}}
	if s.jobs.Sites != nil {
		sts, err := s.jobs.Sites.Statuses(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, st := range sts {
			notes := st.Notes
			if notes == nil {
				notes = []string{}
			}
			info := wire.Site{
				Cluster: st.Name, Nodes: st.Nodes, CPUsPerNode: st.CPUsPerNode, MemoryPerNodeGB: st.MemoryPerNodeGB,
				MaxRuntimeMin: st.MaxRuntimeMin, Notes: notes, Active: st.Active, Available: st.Available,
			}
			if !st.Available {
				info.UnavailableReason = &st.Reason
			}
			out.Sites = append(out.Sites, info)
		}
	}
	writeJSON(w, 200, out)
}

// listFilter reads the filters GET /jobs and GET /admin/jobs share.
func (s *Server) listFilter(p *params) jobs.ListFilter {
	f := jobs.ListFilter{
		Cluster: p.enum("query", "cluster", s.siteNames(), false),
		State:   p.state("state", false),
		After:   p.datetime("after"),
		Before:  p.datetime("before"),
		Limit:   p.integer("query", "limit", 1000, 1, 1000),
	}
	f.ImageName, f.ImageTag, f.ImageDigest = p.image("image")
	return f
}

func (s *Server) writeJobList(w http.ResponseWriter, r *http.Request, f jobs.ListFilter) {
	js, err := s.jobs.Records.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.Jobs{Jobs: make([]wire.Job, 0, len(js))}
	for _, j := range js {
		out.Jobs = append(out.Jobs, jobView(j, true))
	}
	writeJSON(w, 200, out)
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := newParams(r)
	f := s.listFilter(p)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	f.User = u.Name
	s.writeJobList(w, r, f)
}

// userNamePattern is the auth2 user name rule of GET /admin/jobs?user=.
var userNamePattern = regexp.MustCompile(`^[a-z][a-z\d_]*$`)

func (s *Server) adminListJobs(w http.ResponseWriter, r *http.Request) {
	if _, err := s.requireAdmin(r); err != nil {
		s.fail(w, r, err)
		return
	}
	p := newParams(r)
	user := p.pattern("query", "user", userNamePattern, `^[a-z][a-z\d_]*$`, 1, 100)
	f := s.listFilter(p)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	if user != "" {
		tok, _ := r.Context().Value(tokenKey).(string)
		missing, err := s.auth.UsersExist(r.Context(), tok, user)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if len(missing) > 0 {
			s.fail(w, r, ctserr.New(ctserr.CodeInvalidUserName, "No such user: %s", user))
			return
		}
	}
	f.User = user
	s.writeJobList(w, r, f)
}

// readBody reads a request body up to limit; an oversized body is a 413, a failed read 400.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, &ctserr.StatusError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("The request body is larger than %d bytes", mbe.Limit)}
	case err != nil:
		return nil, ctserr.New(ctserr.CodeIllegalParameter, "Unable to read the request body: %s", err)
	}
	return b, nil
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
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
	id, err := s.jobs.Admission.Submit(r.Context(), jobsUser(u), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, wire.SubmitJobResponse{JobID: id})
}

// loadJob checks the route's auth level and the job_id, and loads the job: the owner's on
// the user routes (admins included, as in the CTS), any job on the admin routes.
func (s *Server) loadJob(w http.ResponseWriter, r *http.Request, level string, more ...func(*params)) (*jobs.Job, *params, bool) {
	u, err := s.requireLevel(r, level)
	if err != nil {
		s.fail(w, r, err)
		return nil, nil, false
	}
	p := newParams(r)
	id := p.jobID()
	for _, f := range more {
		f(p)
	}
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return nil, nil, false
	}
	ju := jobsUser(u)
	ju.Admin = level != authOwner
	j, err := s.jobs.Records.Get(r.Context(), ju, id)
	if err != nil {
		s.fail(w, r, err)
		return nil, nil, false
	}
	return j, p, true
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	if j, _, ok := s.loadJob(w, r, authOwner); ok {
		if len(j.OutputsManifests) > 0 {
			v := jobView(j, false)
			v.Outputs = nil
			s.writeJobOutputs(w, r, v, j)
			return
		}
		writeJSON(w, 200, jobView(j, false))
	}
}

func (s *Server) adminGetJob(w http.ResponseWriter, r *http.Request) {
	if j, _, ok := s.loadJob(w, r, authAdminExecutor); ok {
		if len(j.OutputsManifests) > 0 {
			v := adminJobView(j)
			v.Outputs = nil
			s.writeJobOutputs(w, r, v, j)
			return
		}
		writeJSON(w, 200, adminJobView(j))
	}
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	if j, _, ok := s.loadJob(w, r, authOwner); ok {
		writeJSON(w, 200, statusView(j))
	}
}

func (s *Server) exitCodes(w http.ResponseWriter, r *http.Request) { s.writeExitCodes(w, r, authOwner) }
func (s *Server) adminExitCodes(w http.ResponseWriter, r *http.Request) {
	s.writeExitCodes(w, r, authAdmin)
}

func (s *Server) writeExitCodes(w http.ResponseWriter, r *http.Request, level string) {
	j, _, ok := s.loadJob(w, r, level)
	if !ok {
		return
	}
	subs, err := s.jobs.Records.SubJobs(r.Context(), j.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(subs) == 0 {
		s.fail(w, r, ctserr.New(ctserr.CodeNoSuchSubJob, "No subjobs found for job %s", j.ID))
		return
	}
	codes := make([]*int, len(subs))
	for i, sj := range subs {
		codes[i] = sj.ExitCode
	}
	writeJSON(w, 200, wire.ExitCodes{ExitCodes: codes})
}

func (s *Server) adminSubJobs(w http.ResponseWriter, r *http.Request) {
	s.writeSubJobs(w, r, authAdmin)
}

// subJobs is the owner's view of a job's containers: their states, transitions, exit codes
// and outputs, without the admin-only errors.
func (s *Server) subJobs(w http.ResponseWriter, r *http.Request) { s.writeSubJobs(w, r, authOwner) }

func (s *Server) writeSubJobs(w http.ResponseWriter, r *http.Request, level string) {
	j, _, ok := s.loadJob(w, r, level)
	if !ok {
		return
	}
	subs, err := s.jobs.Records.SubJobs(r.Context(), j.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.SubJobs{SubJobs: make([]wire.SubJob, 0, len(subs))}
	for i := range subs {
		v := subJobView(&subs[i])
		if level != authAdmin {
			v.AdminError, v.Traceback = nil, nil
		}
		out.SubJobs = append(out.SubJobs, v)
	}
	writeJSON(w, 200, out)
}

func (s *Server) adminSubJob(w http.ResponseWriter, r *http.Request) {
	var n int
	j, _, ok := s.loadJob(w, r, authAdmin, func(p *params) { n = p.integer("path", "container_num", 0, 0, -1) })
	if !ok {
		return
	}
	sj, err := s.jobs.Records.SubJob(r.Context(), j.ID, n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, subJobView(sj))
}

func (s *Server) runnerStatus(w http.ResponseWriter, r *http.Request) {
	var n int
	j, _, ok := s.loadJob(w, r, authAdmin, func(p *params) { n = p.integer("query", "container_number", 0, 0, -1) })
	if !ok {
		return
	}
	raw, err := s.jobs.Launch.RunnerStatus(r.Context(), j.ID, n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	_, _ = w.Write(append(raw, '\n'))
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request)      { s.doCancel(w, r, authOwner) }
func (s *Server) adminCancel(w http.ResponseWriter, r *http.Request) { s.doCancel(w, r, authAdmin) }

func (s *Server) doCancel(w http.ResponseWriter, r *http.Request, level string) {
	j, _, ok := s.loadJob(w, r, level)
	if !ok {
		return
	}
	ju := jobsUser(userOf(r))
	ju.Admin = level != authOwner
	if err := s.jobs.Launch.Cancel(r.Context(), ju, j.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerLog(stream string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var n int
		var seek, length int64
		j, _, ok := s.loadJob(w, r, authOwner, func(p *params) {
			n = p.integer("path", "container_num", 0, 0, -1)
			seek = int64(p.integer("query", "seek", 0, 0, -1))
			length = int64(p.integer("query", "length", 0, 1, -1))
		})
		if !ok {
			return
		}
		if j.LogPath == "" {
			s.fail(w, r, ctserr.New(ctserr.CodeNoLogs, "Job ID %s has no logs available", j.ID))
			return
		}
		if n >= j.Input.NumContainers {
			s.fail(w, r, ctserr.New(ctserr.CodeIllegalParameter, "Container number %d is out of range for job %s with %d containers", n, j.ID, j.Input.NumContainers))
			return
		}
		name := fmt.Sprintf("container-%d-%s.txt", n, stream)
		started := false
		err := s.logs.Stream(r.Context(), j.LogPath+"/"+name, seek, length, func(size int64) io.Writer {
			started = true
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Content-Disposition", "attachment; filename="+name)
			if size >= 0 {
				w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			}
			w.WriteHeader(200)
			return w
		})
		if err != nil && !started {
			var ce *ctserr.Error
			if errors.As(err, &ce) && ce.Code == ctserr.CodeS3PathNotFound {
				err = ctserr.New(ctserr.CodeNoLogs, "Job ID %s has no %s log for container %d", j.ID, stream, n)
			}
			s.fail(w, r, err)
		}
	}
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	p := newParams(r)
	limit := p.integer("query", "limit", 1000, 1, 1000)
	skip := p.integer("query", "skip", 0, 0, 1<<31-1)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	imgs, err := s.images.List(r.Context(), skip, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.Images{Data: make([]wire.Image, 0, len(imgs))}
	for _, im := range imgs {
		out.Data = append(out.Data, imageView(im))
	}
	writeJSON(w, 200, out)
}

// imageID is the image_id path parameter (1 to 1000 characters).
func imageID(r *http.Request) (string, error) {
	id := r.PathValue("image_id")
	if n := len([]rune(id)); n > 1000 {
		return "", ctserr.Validation(ctserr.ValidationDetail{Type: "string_too_long", Loc: []any{"path", "image_id"},
			Msg: "String should have at most 1000 characters", Input: id, Ctx: map[string]any{"max_length": 1000}})
	}
	return id, nil
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) {
	id, err := imageID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	img, err := s.images.Resolve(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, imageView(*img))
}

// decodeStrict decodes a JSON object body into v, refusing unknown keys, as a 30010.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return ctserr.Validation(ctserr.ValidationDetail{Type: "json_invalid", Loc: []any{"body"}, Msg: err.Error(), Input: string(body)})
	}
	if dec.More() {
		return ctserr.Validation(ctserr.ValidationDetail{Type: "json_invalid", Loc: []any{"body"}, Msg: "trailing data after the JSON value", Input: string(body)})
	}
	return nil
}

func (s *Server) registerImage(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireAdmin(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := imageID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var reg images.Registration
	body, err := readBody(w, r, 1<<20)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeStrict(body, &reg); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	p := newParams(r)
	reg.RefdataID = p.pattern("query", "refdata_id", idPattern, `^[\w-]+$`, 1, 50)
	if v, ok := p.raw("query", "default_refdata_mount_point"); ok {
		if l := len([]rune(v)); l < 1 || l > 1024 {
			p.bad("query", "default_refdata_mount_point", "string_too_long", "String should have 1 to 1024 characters", v, nil)
		}
		reg.DefaultRefdataMountPoint = v
	}
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	img, err := s.images.Register(r.Context(), u.Name, id, reg)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, imageView(*img))
}

func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request) {
	if _, err := s.requireAdmin(r); err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := imageID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.images.Delete(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminMeta(w http.ResponseWriter, r *http.Request) {
	j, _, ok := s.loadJob(w, r, authAdmin)
	if !ok {
		return
	}
	body, err := readBody(w, r, 1<<20)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req wire.UpdateAdminMeta
	if err := decodeStrict(body, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	set := make(map[string]any, len(req.SetFields))
	var details []ctserr.ValidationDetail
	for k, v := range req.SetFields {
		switch x := v.(type) {
		case string:
			set[k] = x
		case json.Number:
			if i, err := x.Int64(); err == nil {
				set[k] = i
			} else if f, err := x.Float64(); err == nil {
				set[k] = f
			} else {
				details = append(details, ctserr.ValidationDetail{Type: "float_parsing", Loc: []any{"body", "set_fields", k},
					Msg: "Input should be a finite number", Input: x.String()})
			}
		default:
			details = append(details, ctserr.ValidationDetail{Type: "string_type", Loc: []any{"body", "set_fields", k},
				Msg: "Input should be a valid string, a valid integer or a valid number", Input: v})
		}
	}
	if len(details) > 0 {
		s.fail(w, r, ctserr.Validation(details...))
		return
	}
	var unset []string
	seen := map[string]bool{}
	for _, k := range req.UnsetKeys {
		if !seen[k] {
			seen[k] = true
			unset = append(unset, k)
		}
	}
	if err := s.jobs.Records.UpdateAdminMeta(r.Context(), j.ID, set, unset); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminNotify(w http.ResponseWriter, r *http.Request) {
	var st string
	j, _, ok := s.loadJob(w, r, authAdmin, func(p *params) { st = string(p.state("state", true)) })
	if !ok {
		return
	}
	t, err := jobs.TransitionFor(j, job.State(st))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.cfg.Notifier == nil {
		s.fail(w, r, ctserr.New(ctserr.CodeResourceUnavailable, "This service has no Kafka notifier"))
		return
	}
	if err := s.cfg.Notifier.Send(r.Context(), j.ID, t); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminClean(w http.ResponseWriter, r *http.Request) {
	var force bool
	j, _, ok := s.loadJob(w, r, authAdmin, func(p *params) { force = p.boolean("force", false) })
	if !ok {
		return
	}
	if err := s.jobs.Launch.Clean(r.Context(), j.ID, force); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) siteActive(active bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.requireAdmin(r); err != nil {
			s.fail(w, r, err)
			return
		}
		p := newParams(r)
		site := p.enum("path", "site", s.siteNames(), true)
		if err := p.err(); err != nil {
			s.fail(w, r, err)
			return
		}
		if err := s.jobs.Sites.SetActive(r.Context(), site, active); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) unsentNotifications(w http.ResponseWriter, r *http.Request) {
	if _, err := s.requireAdmin(r); err != nil {
		s.fail(w, r, err)
		return
	}
	p := newParams(r)
	age := p.duration("notification_age", 600, 60)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.cfg.Notifier == nil {
		s.fail(w, r, ctserr.New(ctserr.CodeResourceUnavailable, "This service has no Kafka notifier"))
		return
	}
	older := time.Now().Add(-time.Duration(age * float64(time.Second)))
	nj, nt, err := s.cfg.Notifier.CheckUnsent(r.Context(), older)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, wire.UnsentNotifications{Jobs: nj, Transitions: nt})
}

// unsupported answers a route of the Python service that no site of this one needs (NERSC,
// JAWS, the Python executor) with 400 / 100000, after the route's auth check.
func (s *Server) unsupported(level, what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.requireLevel(r, level); err != nil {
			s.fail(w, r, err)
			return
		}
		s.fail(w, r, ctserr.New(ctserr.CodeUnsupportedOperation, "%s", what))
	}
}
