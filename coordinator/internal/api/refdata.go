package api

import (
	"bytes"
	"net/http"
	"regexp"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/coordinator/wire"
	"github.com/kbase/cts/shared/staging"
)

// The reference data routes, served when
// Config.Refdata is set.

var (
	pRefdataID = param{In: "path", Name: "refdata_id", Type: "string", Required: true, Description: `The reference data ID: ^[\w-]+$, 1 to 50 characters.`}
	pS3Path    = param{In: "path", Name: "s3_path", Type: "string", Required: true, Description: "The S3 path (bucket/key) of the reference data file, 5 to 1088 characters."}
	crcPattern = regexp.MustCompile(`^[A-Za-z0-9+/=]{12}$`)
)

func (s *Server) refdataRoutes() []route {
	if s.cfg.Refdata == nil || s.cfg.Staging == nil {
		return nil
	}
	site := param{In: "path", Name: "cluster", Type: "string", Required: true, Description: "The site.", Enum: s.siteNames()}
	state := param{In: "path", Name: "new_state", Type: "string", Required: true, Description: "The new state."}
	for _, st := range refdata.States {
		state.Enum = append(state.Enum, string(st))
	}
	return []route{
		{Method: "GET", Pattern: "/refdata", Tag: "Reference data", Summary: "List reference data (at most 1000, by file)", Auth: authNone, Status: 200,
			Response: wire.RefdataList{}, handler: s.listRefdata},
		{Method: "GET", Pattern: "/refdata/id/{refdata_id}", Tag: "Reference data", Summary: "Get reference data by ID", Auth: authNone, Status: 200,
			Response: wire.Refdata{}, Params: []param{pRefdataID}, handler: s.getRefdata},
		{Method: "GET", Pattern: "/refdata/path/{s3_path...}", Tag: "Reference data", Summary: "Get reference data by its S3 file", Auth: authNone, Status: 200,
			Response: wire.RefdataList{}, Params: []param{pS3Path}, handler: s.refdataByPath},
		{Method: "POST", Pattern: "/admin/refdata/{s3_path...}", Tag: "Admin", Summary: "Register reference data and stage it at every active site", Auth: authAdmin, Status: 200,
			Response: wire.Refdata{}, Params: []param{pS3Path,
				{In: "query", Name: "crc64nvme", Type: "string", Required: true, Description: "The file's CRC64/NVME, base64 (12 characters); must match S3's."},
				{In: "query", Name: "unpack", Type: "boolean", Description: "Unpack the archive (.tar.gz, .tgz, .tar.zst, .tar, .gz, .zst); default false."}},
			Errors: s3Errors, handler: s.registerRefdata},
		{Method: "GET", Pattern: "/admin/refdata/{refdata_id}", Tag: "Admin", Summary: "Get reference data with its per-site details", Auth: authAdmin, Status: 200,
			Response: wire.Refdata{}, Params: []param{pRefdataID}, handler: s.adminGetRefdata},
		{Method: "PUT", Pattern: "/admin/refdata/{refdata_id}/{cluster}/recover", Tag: "Admin", Summary: "Stage reference data again at a site", Auth: authAdmin, Status: 204,
			Params: []param{pRefdataID, site}, handler: s.recoverRefdata},
		{Method: "DELETE", Pattern: "/admin/refdata/{refdata_id}/{cluster}/clean", Tag: "Admin", Summary: "Clean up a site's staging task", Auth: authAdmin, Status: 204,
			Params: []param{pRefdataID, site, {In: "query", Name: "force", Type: "boolean", Description: "Clean even when not terminal."}}, handler: s.cleanRefdata},
		{Method: "PUT", Pattern: "/external_exec/refdata/{refdata_id}/{cluster}/update/{new_state}", Tag: "Agents", Summary: "The staging agent reports its state",
			Auth: authStager, Status: 204, Request: wire.RefdataUpdate{}, Params: []param{pRefdataID, site, state}, handler: s.updateRefdata},
	}
}

func (s *Server) refdataID(p *params) string {
	return p.pattern("path", "refdata_id", idPattern, `^[\w-]+$`, 1, 50)
}

func (s *Server) s3PathParam(p *params) string {
	return p.pattern("path", "s3_path", regexp.MustCompile(`(?s)^.*$`), ".*", 5, 1088)
}

func (s *Server) listRefdata(w http.ResponseWriter, r *http.Request) {
	rds, err := s.cfg.Refdata.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, listView(rds))
}

func listView(rds []refdata.Refdata) wire.RefdataList {
	out := wire.RefdataList{Data: []wire.Refdata{}}
	for i := range rds {
		out.Data = append(out.Data, rds[i].View())
	}
	return out
}

func (s *Server) getRefdata(w http.ResponseWriter, r *http.Request) {
	s.refdataView(w, r, authNone)
}

func (s *Server) adminGetRefdata(w http.ResponseWriter, r *http.Request) {
	s.refdataView(w, r, authAdmin)
}

func (s *Server) refdataView(w http.ResponseWriter, r *http.Request, level string) {
	if _, err := s.requireLevel(r, level); err != nil {
		s.fail(w, r, err)
		return
	}
	p := newParams(r)
	id := s.refdataID(p)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	rd, err := s.cfg.Refdata.Get(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if level == authAdmin {
		writeJSON(w, 200, rd.AdminView())
		return
	}
	writeJSON(w, 200, rd.View())
}

func (s *Server) refdataByPath(w http.ResponseWriter, r *http.Request) {
	p := newParams(r)
	path := s.s3PathParam(p)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	rds, err := s.cfg.Refdata.ByPath(r.Context(), path)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, listView(rds))
}

func (s *Server) registerRefdata(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireAdmin(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := newParams(r)
	path := s.s3PathParam(p)
	crc := p.pattern("query", "crc64nvme", crcPattern, "^[A-Za-z0-9+/=]{12}$", 12, 12)
	if _, ok := p.raw("query", "crc64nvme"); !ok {
		p.bad("query", "crc64nvme", "missing", "Field required", nil, nil)
	}
	unpack := p.boolean("unpack", false)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	rd, err := s.cfg.Refdata.Register(r.Context(), u.Name, path, crc, unpack)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, rd.View())
}

func (s *Server) refdataSite(w http.ResponseWriter, r *http.Request) (id, site string, p *params, ok bool) {
	if _, err := s.requireAdmin(r); err != nil {
		s.fail(w, r, err)
		return "", "", nil, false
	}
	p = newParams(r)
	id = s.refdataID(p)
	site = p.enum("path", "cluster", s.siteNames(), true)
	return id, site, p, true
}

func (s *Server) recoverRefdata(w http.ResponseWriter, r *http.Request) {
	id, site, p, ok := s.refdataSite(w, r)
	if !ok {
		return
	}
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.cfg.Staging.RecoverStaging(r.Context(), id, site); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) cleanRefdata(w http.ResponseWriter, r *http.Request) {
	id, site, p, ok := s.refdataSite(w, r)
	if !ok {
		return
	}
	force := p.boolean("force", false)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.cfg.Staging.CleanStaging(r.Context(), id, site, force); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// updateRefdata takes a staging agent's report: the stager's own credential (its refdata
// record, site and staging attempt), or the refdata service role. The site-wide executor
// token alone may not.
func (s *Server) updateRefdata(w http.ResponseWriter, r *http.Request) {
	stager := agentOf(r)
	if stager == nil {
		u, err := s.requireUser(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !u.RefdataService {
			s.fail(w, r, ctserr.New(ctserr.CodeUnauthorized, "User %s may not update reference data: stagers report with the credential their launcher gave them", u.Name))
			return
		}
	}
	p := newParams(r)
	id := s.refdataID(p)
	site := p.enum("path", "cluster", s.siteNames(), true)
	var states []string
	for _, st := range refdata.States {
		states = append(states, string(st))
	}
	state := p.enum("path", "new_state", states, true)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	if stager != nil {
		if stager.JobID != staging.JobID(id) || stager.Site != site {
			s.fail(w, r, ctserr.New(ctserr.CodeUnauthorized, "The stager's credential is for %s at site %s, not reference data %s at site %s",
				stager.JobID, stager.Site, id, site))
			return
		}
	}
	var upd wire.RefdataUpdate
	body, err := readBody(w, r, 1<<20)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeStrict(body, &upd); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if stager != nil {
		err = s.cfg.Refdata.StagerUpdate(r.Context(), id, site, stager.Launch, refdata.State(state), upd)
	} else {
		err = s.cfg.Refdata.UpdateState(r.Context(), id, site, refdata.State(state), upd)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
