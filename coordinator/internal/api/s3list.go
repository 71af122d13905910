package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/objects"
	"github.com/kbase/cts/coordinator/wire"
	"github.com/kbase/cts/shared/s3path"
)

// ObjectLister lists S3 prefixes for GET /s3/list (objects.Objects implements it).
type ObjectLister interface {
	// List lists up to limit entries directly below prefix ("bucket/" or "bucket/key-prefix"),
	// continuing from next (empty for the first page).
	List(ctx context.Context, prefix, next string, limit int) (objects.Listing, error)
}

var _ ObjectLister = (*objects.Objects)(nil)

const s3ListSummary = "List the S3 folders and files directly below a prefix that you may use as job inputs, a page at a " +
	"time (an addition to the CTS API, for choosing inputs). Only folders your jobs may read under the site's access " +
	"rules are listed (an empty prefix lists them, as GET /whoami does); the log folder never is."

var s3ListParams = []param{
	{In: "query", Name: "prefix", Type: "string", Required: true,
		Description: "bucket/ or bucket/path: lists what directly follows it (path may be a partial name)."},
	{In: "query", Name: "next", Type: "string", Description: "The next value of the previous page."},
	{In: "query", Name: "limit", Type: "integer", Description: "At most this many folders and files together, 1 to 1000 (default 1000)."},
}

// s3List serves GET /s3/list for any user: it lists only what the caller may read as inputs.
func (s *Server) s3List(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := newParams(r)
	prefix, given := p.raw("query", "prefix")
	if !given {
		p.details = append(p.details, ctserr.ValidationDetail{Type: "missing", Loc: []any{"query", "prefix"}, Msg: "Field required", Input: nil})
	}
	next, _ := p.raw("query", "next")
	limit := p.integer("query", "limit", 1000, 1, 1000)
	if err := p.err(); err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.S3Listing{Prefix: prefix, Folders: []string{}, Files: []wire.S3Object{}}
	var grants []string
	if s.cfg.Access != nil {
		for _, g := range s.cfg.Access.Grants(u.Name) {
			grants = append(grants, g.Path)
		}
	}
	out.AllowedPaths = grants
	if prefix == "" {
		if len(grants) == 0 {
			s.fail(w, r, ctserr.New(ctserr.CodeIllegalS3Path, "Give a prefix that starts with a bucket: bucket/ or bucket/path"))
			return
		}
		out.Folders = append(out.Folders, grants...)
		writeJSON(w, http.StatusOK, out)
		return
	}
	if err := s.checkListable(u.Name, prefix); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.cfg.Lister == nil {
		s.fail(w, r, ctserr.New(ctserr.CodeResourceUnavailable, "This service does not list S3 folders"))
		return
	}
	l, err := s.cfg.Lister.List(r.Context(), prefix, next, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out.Folders, out.Next = l.Folders, l.Next
	for _, f := range l.Files {
		out.Files = append(out.Files, wire.S3Object{File: f.Path, Size: f.Size, Modified: wire.At(f.Modified)})
	}
	writeJSON(w, http.StatusOK, out)
}

// checkListable refuses a prefix the user may not list: the folder that holds what it lists
// (prefix up to its last "/") must be readable by the user's jobs under the site's access
// rules, and never overlap the container log folder. With no rules (tests), the path grammar
// alone applies.
func (s *Server) checkListable(user, prefix string) error {
	if !strings.Contains(prefix, "/") {
		return ctserr.New(ctserr.CodeIllegalS3Path, "The prefix '%s' has no bucket: give bucket/ or bucket/path", prefix)
	}
	folder, partial := prefix[:strings.LastIndex(prefix, "/")+1], prefix[strings.LastIndex(prefix, "/")+1:]
	dir, err := s3path.ParseDir(folder)
	if err != nil {
		return ctserr.New(ctserr.CodeIllegalS3Path, "%s", err.Error())
	}
	if partial == "." || partial == ".." {
		// A file-system backed S3 server may resolve it.
		return ctserr.New(ctserr.CodeIllegalS3Path, "The prefix '%s' ends in a '%s' segment: give the folder without it", prefix, partial)
	}
	if s.cfg.Access == nil {
		return nil
	}
	return s.cfg.Access.CanReadDir(user, dir)
}
