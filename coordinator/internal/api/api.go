// Package api is the coordinator's CTS-compatible REST API (reference §1): routing, the
// Authorization header rules, role checks, request decoding and the response models with the
// CTS conventions (null fields omitted, ISO 8601 UTC timestamps with Z, ISO 8601 durations).
// Every error leaves through ctserr.Write exactly once. Business rules live in the jobs and
// images packages; this package only translates HTTP.
package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kbase/cts/coordinator/internal/auth"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/protocol"
)

// ServiceName is what GET / reports; the CTS Python client checks it.
const ServiceName = "CDM Task Service"

// Authenticator resolves a KBase token to a user.
type Authenticator interface {
	User(ctx context.Context, token string) (*auth.User, error)
}

// LogStreamer streams a log object from S3.
type LogStreamer interface {
	Stream(ctx context.Context, path string, seek, length int64, w func(size int64) io.Writer) error
}

// Config holds what the API reports about itself.
type Config struct {
	Version      string
	GitHash      string
	AllowedPaths []string
	// MaxBodyBytes bounds request bodies (default 16 MiB: 10000 input files fit).
	MaxBodyBytes int64
	SiteInfo     []SiteInfo
}

// SiteInfo is a site as GET /sites shows it.
type SiteInfo struct {
	Cluster         string   `json:"cluster"`
	Nodes           *int     `json:"nodes"`
	CPUsPerNode     int      `json:"cpus_per_node"`
	MemoryPerNodeGB float64  `json:"memory_per_node_gb"`
	MaxRuntimeMin   float64  `json:"max_runtime_min"`
	Notes           []string `json:"notes"`
	Active          bool     `json:"active"`
	Available       bool     `json:"available"`
	UnavailReason   *string  `json:"unavailable_reason"`
}

// Server is the REST API.
type Server struct {
	cfg    Config
	auth   Authenticator
	jobs   *jobs.Service
	images *images.Manager
	logs   LogStreamer
	agents http.Handler
	log    *slog.Logger
	mux    *http.ServeMux
}

// New returns the API handler. agents serves the agent websocket at protocol.Path.
func New(cfg Config, a Authenticator, js *jobs.Service, im *images.Manager, logs LogStreamer, agents http.Handler, log *slog.Logger) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	s := &Server{cfg: cfg, auth: a, jobs: js, images: im, logs: logs, agents: agents, log: log, mux: http.NewServeMux()}
	s.routes()
	return s
}

type ctxKey int

const (
	userKey ctxKey = iota
	requestIDKey
)

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /{$}", s.root)
	m.HandleFunc("GET /whoami", s.whoami)
	m.HandleFunc("GET /sites", s.sites)
	m.HandleFunc("POST /jobs", s.submit)
	m.HandleFunc("GET /jobs/{job_id}", s.getJob)
	m.HandleFunc("GET /jobs/{job_id}/status", s.getStatus)
	m.HandleFunc("GET /jobs/{job_id}/exit_codes", s.exitCodes)
	m.HandleFunc("GET /jobs/{job_id}/log/{container_num}/{stream}", s.containerLog)
	m.HandleFunc("PUT /jobs/{job_id}/cancel", s.cancel)
	m.HandleFunc("GET /images", s.listImages)
	m.HandleFunc("GET /images/{image_id...}", s.getImage)
	m.HandleFunc("POST /admin/images/{image_id...}", s.registerImage)
	m.HandleFunc("DELETE /admin/images/{image_id...}", s.deleteImage)
	m.HandleFunc("GET /admin/jobs/{job_id}", s.adminGetJob)
	m.HandleFunc("PUT /admin/jobs/{job_id}/cancel", s.adminCancel)
	if s.agents != nil {
		m.Handle("GET "+protocol.Path, s.agents)
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := s.allowedMethods(r); len(allow) > 0 {
			// A known path with another method: 405 without an app code, as Starlette does.
			w.Header().Set("Allow", strings.Join(allow, ", "))
			s.fail(w, r, &ctserr.StatusError{Status: http.StatusMethodNotAllowed, Message: "Method Not Allowed"})
			return
		}
		s.fail(w, r, ctserr.New(ctserr.CodeNotFound, "Not Found"))
	})
}

// allowedMethods lists the methods a route other than the catch-all serves at r's path. The
// catch-all "/" matches every method, which would otherwise hide ServeMux's own 405.
func (s *Server) allowedMethods(r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

// ServeHTTP assigns a request ID, validates any Authorization header (a token sent to any route
// is validated, reference §1.1), and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rid := uuid.NewString()
	ctx := context.WithValue(r.Context(), requestIDKey, rid)
	r = r.WithContext(ctx)
	if h := r.Header.Get("Authorization"); h != "" {
		tok, err := auth.ParseAuthHeader(h)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		u, err := s.auth.User(ctx, tok)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(ctx, userKey, u))
	}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, code: 200}
	s.mux.ServeHTTP(sw, r)
	user := ""
	if u := userOf(r); u != nil {
		user = u.Name
	}
	s.log.DebugContext(ctx, "request", "request_id", rid, "method", r.Method, "path", r.URL.Path, "status", sw.code,
		"user", user, "duration_ms", time.Since(start).Milliseconds())
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(c int) { w.code = c; w.ResponseWriter.WriteHeader(c) }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack lets the websocket upgrader take the connection over.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	w.code = http.StatusSwitchingProtocols
	return h.Hijack()
}

// Flush forwards streaming flushes.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func userOf(r *http.Request) *auth.User {
	u, _ := r.Context().Value(userKey).(*auth.User)
	return u
}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey).(string)
	return id
}

// WriteError renders err in the CTS error format for r; for use by other handlers.
func (s *Server) WriteError(w http.ResponseWriter, r *http.Request, err error) { s.fail(w, r, err) }

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	u := userOf(r)
	var ce *ctserr.Error
	if !errors.As(err, &ce) {
		s.log.ErrorContext(r.Context(), "request failed", "request_id", requestID(r), "path", r.URL.Path, "error", err)
	}
	ctserr.Write(w, err, requestID(r), u != nil && u.Admin)
}

func (s *Server) requireUser(r *http.Request) (*auth.User, error) {
	u := userOf(r)
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

// AuthorizeExecutor is the agent websocket's authorizer: a valid token with the executor role.
func (s *Server) AuthorizeExecutor(r *http.Request) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return ctserr.New(ctserr.CodeNoToken, "Authorization header required")
	}
	tok, err := auth.ParseAuthHeader(h)
	if err != nil {
		return err
	}
	u, err := s.auth.User(r.Context(), tok)
	if err != nil {
		return err
	}
	if !u.Executor {
		return ctserr.New(ctserr.CodeUnauthorized, "User %s does not have the executor role", u.Name)
	}
	return nil
}

func jobsUser(u *auth.User) jobs.User { return jobs.User{Name: u.Name, Staff: u.Staff, Admin: u.Admin} }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

var jobIDOK = func(id string) bool {
	if len(id) < 1 || len(id) > 50 {
		return false
	}
	for _, c := range id {
		if !(c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func pathJobID(r *http.Request) (string, error) {
	id := r.PathValue("job_id")
	if !jobIDOK(id) {
		return "", ctserr.Validation(ctserr.ValidationDetail{
			Type: "string_pattern_mismatch", Loc: []any{"path", "job_id"}, Msg: "String should match pattern '^[\\w-]+$'", Input: id,
		})
	}
	return id, nil
}

func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{
		"service_name": ServiceName,
		"version":      s.cfg.Version,
		"git_hash":     s.cfg.GitHash,
		"server_time":  ctserr.FormatTime(time.Now()),
		"notes":        "This service is a Go re-implementation of the CDM Task Service",
	})
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	roles := []string{}
	if u.Admin {
		roles = append(roles, "full_admin")
	}
	paths := []map[string]string{}
	for _, p := range s.cfg.AllowedPaths {
		paths = append(paths, map[string]string{"path": p, "perm": "write"})
	}
	writeJSON(w, 200, map[string]any{"user": u.Name, "roles": roles, "allowed_paths": paths})
}

func (s *Server) sites(w http.ResponseWriter, r *http.Request) {
	out := s.cfg.SiteInfo
	if out == nil {
		out = []SiteInfo{}
	}
	writeJSON(w, 200, map[string]any{"sites": out})
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireUser(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	opts := jobinput.DefaultOptions()
	opts.Sites = s.jobs.SiteNames()
	in, err := jobinput.Decode(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), opts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := s.jobs.Submit(r.Context(), jobsUser(u), in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, map[string]string{"job_id": id})
}

func (s *Server) loadJob(w http.ResponseWriter, r *http.Request, admin bool) (*jobs.Job, bool) {
	var u *auth.User
	var err error
	if admin {
		u, err = s.requireAdmin(r)
	} else {
		u, err = s.requireUser(r)
	}
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	id, err := pathJobID(r)
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	ju := jobsUser(u)
	if !admin {
		ju.Admin = false // owners only on the user routes, as in the CTS
	}
	j, err := s.jobs.Get(r.Context(), ju, id)
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	return j, true
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	if j, ok := s.loadJob(w, r, false); ok {
		writeJSON(w, 200, jobView(j, false))
	}
}

func (s *Server) adminGetJob(w http.ResponseWriter, r *http.Request) {
	if j, ok := s.loadJob(w, r, true); ok {
		writeJSON(w, 200, jobView(j, true))
	}
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	if j, ok := s.loadJob(w, r, false); ok {
		writeJSON(w, 200, statusView(j))
	}
}

func (s *Server) exitCodes(w http.ResponseWriter, r *http.Request) {
	j, ok := s.loadJob(w, r, false)
	if !ok {
		return
	}
	subs, err := s.jobs.SubJobs(r.Context(), j.ID)
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
	writeJSON(w, 200, map[string]any{"exit_codes": codes})
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request)      { s.doCancel(w, r, false) }
func (s *Server) adminCancel(w http.ResponseWriter, r *http.Request) { s.doCancel(w, r, true) }

func (s *Server) doCancel(w http.ResponseWriter, r *http.Request, admin bool) {
	j, ok := s.loadJob(w, r, admin)
	if !ok {
		return
	}
	u := userOf(r)
	ju := jobsUser(u)
	if !admin {
		ju.Admin = false
	}
	if err := s.jobs.Cancel(r.Context(), ju, j.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerLog(w http.ResponseWriter, r *http.Request) {
	j, ok := s.loadJob(w, r, false)
	if !ok {
		return
	}
	stream := r.PathValue("stream")
	if stream != "stdout" && stream != "stderr" {
		s.fail(w, r, ctserr.New(ctserr.CodeNotFound, "Not Found"))
		return
	}
	n, err := strconv.Atoi(r.PathValue("container_num"))
	if err != nil || n < 0 {
		s.fail(w, r, ctserr.Validation(ctserr.ValidationDetail{Type: "int_parsing", Loc: []any{"path", "container_num"},
			Msg: "Input should be a valid integer greater than or equal to 0", Input: r.PathValue("container_num")}))
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
	seek, length, err := seekLength(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := fmt.Sprintf("container-%d-%s.txt", n, stream)
	err = s.logs.Stream(r.Context(), j.LogPath+"/"+name, seek, length, func(size int64) io.Writer {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Disposition", "attachment; filename="+name)
		if size > 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		w.WriteHeader(200)
		return w
	})
	if err != nil && w.Header().Get("Content-Disposition") == "" {
		var ce *ctserr.Error
		if errors.As(err, &ce) && ce.Code == ctserr.CodeS3PathNotFound {
			err = ctserr.New(ctserr.CodeNoLogs, "Job ID %s has no %s log for container %d", j.ID, stream, n)
		}
		s.fail(w, r, err)
	}
}

func seekLength(r *http.Request) (int64, int64, error) {
	var seek, length int64
	q := r.URL.Query()
	if v := q.Get("seek"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, ctserr.Validation(ctserr.ValidationDetail{Type: "greater_than_equal", Loc: []any{"query", "seek"}, Msg: "Input should be greater than or equal to 0", Input: v})
		}
		seek = n
	}
	if v := q.Get("length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return 0, 0, ctserr.Validation(ctserr.ValidationDetail{Type: "greater_than_equal", Loc: []any{"query", "length"}, Msg: "Input should be greater than or equal to 1", Input: v})
		}
		length = n
	}
	return seek, length, nil
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	imgs, err := s.images.List(r.Context(), 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]map[string]any, 0, len(imgs))
	for _, im := range imgs {
		out = append(out, imageView(im, true))
	}
	writeJSON(w, 200, map[string]any{"data": out})
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) {
	img, err := s.images.Resolve(r.Context(), r.PathValue("image_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, imageView(*img, true))
}

func (s *Server) registerImage(w http.ResponseWriter, r *http.Request) {
	u, err := s.requireAdmin(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var reg images.Registration
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		s.fail(w, r, ctserr.New(ctserr.CodeIllegalParameter, "Unable to read the request body: %s", err))
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&reg); err != nil {
			s.fail(w, r, ctserr.Validation(ctserr.ValidationDetail{Type: "json_invalid", Loc: []any{"body"}, Msg: err.Error()}))
			return
		}
	}
	img, err := s.images.Register(r.Context(), u.Name, r.PathValue("image_id"), reg)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, 200, imageView(*img, true))
}

func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request) {
	if _, err := s.requireAdmin(r); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.images.Delete(r.Context(), r.PathValue("image_id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
