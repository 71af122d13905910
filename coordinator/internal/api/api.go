// Package api is the coordinator's CTS-compatible REST API: routing, the
// Authorization header rules, role checks, request decoding and the response models with the
// CTS conventions (null fields omitted, ISO 8601 UTC timestamps with Z, ISO 8601 durations).
// Every error leaves through ctserr.Write exactly once. Business rules live in the lifecycle
// packages (admission, launch, jobs' records, sites) and images; this package only translates
// HTTP.
package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kbase/cts/coordinator/internal/access"
	"github.com/kbase/cts/coordinator/internal/admission"
	"github.com/kbase/cts/coordinator/internal/agentcred"
	"github.com/kbase/cts/coordinator/internal/auth"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/images"
	"github.com/kbase/cts/coordinator/internal/jobinput"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/coordinator/internal/sites"
	"github.com/kbase/cts/shared/protocol"
)

// ServiceName is what GET / reports; the CTS Python client checks it.
const ServiceName = "CDM Task Service"

// Authenticator resolves a KBase token to a user and checks user names.
type Authenticator interface {
	User(ctx context.Context, token string) (*auth.User, error)
	// UsersExist returns the names that have no account (GET /admin/jobs?user=).
	UsersExist(ctx context.Context, token string, names ...string) ([]string, error)
}

// LogStreamer streams a log object from S3.
type LogStreamer interface {
	Stream(ctx context.Context, path string, seek, length int64, w func(size int64) io.Writer) error
}

// Notifications is the Kafka side of the admin routes.
type Notifications interface {
	// Send sends one transition now, without marking it sent.
	Send(ctx context.Context, jobID string, t jobs.Transition) error
	// CheckUnsent counts the unsent transitions older than olderThan and wakes the sender.
	CheckUnsent(ctx context.Context, olderThan time.Time) (jobCount, transitions int, err error)
}

// Admission admits jobs (*admission.Service).
type Admission interface {
	Submit(ctx context.Context, u jobs.User, in *jobinput.JobInput) (string, error)
	// Preview makes Submit's checks, records nothing, and returns what each container would run.
	Preview(ctx context.Context, u jobs.User, in *jobinput.JobInput) ([]admission.ContainerPreview, error)
}

// Records reads jobs and edits their admin metadata (*jobs.Records).
type Records interface {
	Get(ctx context.Context, u jobs.User, id string) (*jobs.Job, error)
	List(ctx context.Context, f jobs.ListFilter) ([]*jobs.Job, error)
	SubJob(ctx context.Context, id string, n int) (*jobs.SubJob, error)
	SubJobs(ctx context.Context, id string) ([]jobs.SubJob, error)
	UpdateAdminMeta(ctx context.Context, id string, set map[string]any, unset []string) error
}

// Launch cancels and cleans jobs and reports the launcher's view (*launch.Service).
type Launch interface {
	Cancel(ctx context.Context, u jobs.User, id string) error
	Clean(ctx context.Context, id string, force bool) error
	RunnerStatus(ctx context.Context, id string, container int) (json.RawMessage, error)
}

// SiteDirectory is the compute sites and their active flags (*sites.Directory).
type SiteDirectory interface {
	Names() []string
	Statuses(ctx context.Context) ([]sites.Status, error)
	SetActive(ctx context.Context, name string, active bool) error
}

// Jobs are the services behind the job and site routes. Tests of other parts may leave them
// all nil (no sites, no jobs).
type Jobs struct {
	Admission Admission
	Records   Records
	Launch    Launch
	Sites     SiteDirectory
}

// Staging restages and cleans up reference data staging tasks (*launch.Service).
type Staging interface {
	RecoverStaging(ctx context.Context, id, site string) error
	CleanStaging(ctx context.Context, id, site string, force bool) error
}

// Config holds what the API reports about itself and the optional dependencies.
type Config struct {
	// Refdata serves the reference data routes when set, with Staging (both or neither).
	Refdata *refdata.Manager
	Staging Staging
	Version string
	GitHash string
	// Access are the site's S3 access rules GET /whoami reports (nil: none).
	Access *access.Rules
	// MaxBodyBytes bounds request bodies (default 16 MiB: 10000 input files fit).
	MaxBodyBytes int64
	// Notifier serves the notification admin routes; without it they answer 400/60000.
	Notifier Notifications
	// LiveLogs serves the live log streams (GET .../live); without it they answer 400/60000.
	LiveLogs LiveLogs
	// Progress serves GET /jobs/{id}/progress; without it that route answers an empty list.
	Progress ProgressSource
	// LiveLogHeartbeat is the time between heartbeat comments of a live log stream (default
	// 15 s: proxies close idle connections); LiveLogPoll how often a stream checks whether its
	// job has ended (default 5 s).
	LiveLogHeartbeat, LiveLogPoll time.Duration
	// AgentBinary is the path of the static cts-agent served at GET /external_exec/files/cts-agent
	// (empty: that route answers 404).
	AgentBinary string
	// Observer, when set, records every request (metrics).
	Observer Observer
	// Lister serves GET /s3/list; without it that route answers 400/60000.
	Lister ObjectLister
	// UI, when set, serves the web dashboard below /ui/.
	UI http.Handler
	// Credentials verifies agent credentials (package agentcred), which the agent websocket
	// and the reference data update route accept; nil refuses them.
	Credentials *agentcred.Keyring
	// Unavailable, when set, recognises a dependency's outage among errors the API does not
	// know (MongoDB's, which reach it unwrapped through the domain packages): it returns the
	// *ctserr.UnavailableError to answer with, or nil.
	Unavailable func(error) error
}

// Server is the REST API.
type Server struct {
	cfg    Config
	auth   Authenticator
	jobs   Jobs
	images *images.Manager
	logs   LogStreamer
	agents http.Handler
	log    *slog.Logger
	mux    *http.ServeMux
	table  []route
	// documented holds each route's error statuses ("METHOD PATTERN" to routeErrors), which
	// checkDocumented holds every error response to; undocumented reports one that is not
	// there (tests set it to fail).
	documented   map[string][]int
	undocumented func(r *http.Request, route string, status int)
	agent        *fileServer
	// closing ends the live log streams when the server shuts down (CloseStreams).
	closing   chan struct{}
	closeOnce sync.Once
}

// New returns the API handler. agents serves the agent websocket at protocol.Path.
func New(cfg Config, a Authenticator, js Jobs, im *images.Manager, logs LogStreamer, agents http.Handler, log *slog.Logger) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if cfg.LiveLogHeartbeat <= 0 {
		cfg.LiveLogHeartbeat = 15 * time.Second
	}
	if cfg.LiveLogPoll <= 0 {
		cfg.LiveLogPoll = 5 * time.Second
	}
	log = slog.New(LogHandler(log.Handler()))
	s := &Server{cfg: cfg, auth: a, jobs: js, images: im, logs: logs, agents: agents, log: log, mux: http.NewServeMux(),
		closing: make(chan struct{})}
	if cfg.AgentBinary != "" {
		s.agent = &fileServer{path: cfg.AgentBinary, name: agentFileName}
	}
	s.routes()
	return s
}

type ctxKey int

const (
	userKey ctxKey = iota
	requestIDKey
	tokenKey
	// agentKey holds the *agentcred.Claims of a request made with an agent credential.
	agentKey
)

func (s *Server) routes() {
	m := s.mux
	s.table = append(s.routeTable(), s.refdataRoutes()...)
	s.documented = map[string][]int{}
	for _, rt := range s.table {
		m.HandleFunc(rt.Method+" "+rt.Pattern, rt.handler)
		s.documented[rt.Method+" "+rt.Pattern] = routeErrors(rt)
	}
	s.mountDocs()
	if s.cfg.UI != nil {
		m.Handle("GET /ui/", s.cfg.UI)
		m.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	}
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
// slashRedirect returns the path without its trailing slash (with the query) when only that
// form is a route for r's method.
func (s *Server) slashRedirect(r *http.Request) (string, bool) {
	p := r.URL.Path
	if len(p) < 2 || !strings.HasSuffix(p, "/") {
		return "", false
	}
	if _, pattern := s.mux.Handler(r); pattern != "/" && pattern != "" {
		return "", false // the slashed form is a route itself
	}
	u := *r.URL
	u.Path = strings.TrimRight(p, "/")
	u.RawPath = ""
	probe := &http.Request{Method: r.Method, URL: &u, Host: r.Host, Header: http.Header{}}
	if _, pattern := s.mux.Handler(probe); pattern == "/" || pattern == "" {
		return "", false
	}
	return u.RequestURI(), true
}

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
// is validated), and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if target, ok := s.slashRedirect(r); ok {
		// Starlette's redirect_slashes: the CTS documentation POSTs to /jobs/, and requests
		// follows a 307 with the same method and body.
		http.Redirect(w, r, target, http.StatusTemporaryRedirect)
		return
	}
	rid := uuid.NewString()
	ctx := context.WithValue(r.Context(), requestIDKey, rid)
	r = r.WithContext(ctx)
	if h := r.Header.Get("Authorization"); h != "" {
		// A refused header or token ends the request here; its status is checked against the
		// document of the route asked for, like any other answer.
		refuse := func(err error) {
			sw := &statusWriter{ResponseWriter: w, code: 200}
			s.fail(sw, r, err)
			_, pattern := s.mux.Handler(r)
			s.checkDocumented(r, pattern, sw.code)
		}
		tok, err := auth.ParseAuthHeader(h)
		if err != nil {
			refuse(err)
			return
		}
		if agentcred.IsCredential(tok) {
			// An agent's credential: checked here, never sent to auth2.
			c, err := s.verifyCredential(tok)
			if err != nil {
				refuse(err)
				return
			}
			ctx = context.WithValue(ctx, agentKey, c)
		} else {
			u, err := s.auth.User(ctx, tok)
			if err != nil {
				refuse(err)
				return
			}
			ctx = context.WithValue(context.WithValue(ctx, userKey, u), tokenKey, tok)
		}
		r = r.WithContext(ctx)
	}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, code: 200}
	s.mux.ServeHTTP(sw, r)
	s.checkDocumented(r, r.Pattern, sw.code)
	d := time.Since(start)
	route := routeLabel(r)
	streaming := sw.code == http.StatusSwitchingProtocols || strings.HasPrefix(sw.Header().Get("Content-Type"), eventStream)
	if s.cfg.Observer != nil {
		s.cfg.Observer.ObserveRequest(route, r.Method, sw.code, d, streaming)
	}
	user := ""
	if u := userOf(r); u != nil {
		user = u.Name
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "route", route, "status", sw.code, "user", user, "duration_ms", d.Milliseconds()}
	if id := r.PathValue("job_id"); id != "" {
		attrs = append(attrs, "job_id", id)
	}
	s.log.DebugContext(ctx, "request", attrs...)
}

// checkDocumented reports an error status that the OpenAPI document does not list for the
// route (pattern, as the mux names it) that answered it. Requests no route of the table
// serves (an unknown path, a method the path does not have, the document itself) are not
// operations of the document and are not checked.
func (s *Server) checkDocumented(r *http.Request, pattern string, status int) {
	if status < 400 {
		return
	}
	statuses, ok := s.documented[pattern]
	if !ok || slices.Contains(statuses, status) {
		return
	}
	if s.undocumented != nil {
		s.undocumented(r, pattern, status)
		return
	}
	s.log.ErrorContext(r.Context(), "a route answered a status its OpenAPI document does not list",
		"route", pattern, "status", status, "path", r.URL.Path)
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

// verifyCredential checks an agent credential; a refusal is a 401 saying why.
func (s *Server) verifyCredential(tok string) (*agentcred.Claims, error) {
	if s.cfg.Credentials == nil {
		return nil, ctserr.New(ctserr.CodeInvalidToken, "This service accepts no agent credentials")
	}
	c, err := s.cfg.Credentials.Verify(tok)
	if err != nil {
		return nil, &ctserr.Error{Code: ctserr.CodeInvalidToken, Message: "The agent credential is not accepted: " +
			strings.TrimPrefix(err.Error(), agentcred.ErrInvalid.Error()+": "), Err: err}
	}
	return &c, nil
}

// agentOf returns the claims of a request made with an agent credential, or nil.
func agentOf(r *http.Request) *agentcred.Claims {
	c, _ := r.Context().Value(agentKey).(*agentcred.Claims)
	return c
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
	var ue *ctserr.UnavailableError
	if !errors.As(err, &ce) && !errors.As(err, &ue) && s.cfg.Unavailable != nil {
		if dep := s.cfg.Unavailable(err); dep != nil {
			err = dep
		}
	}
	if !errors.As(err, &ce) {
		attrs := []any{"path", r.URL.Path, "error", err}
		if id := r.PathValue("job_id"); id != "" {
			attrs = append(attrs, "job_id", id)
		}
		if errors.As(err, &ue) {
			s.log.WarnContext(r.Context(), "dependency unavailable", append(attrs, "dependency", ue.Dependency)...)
		} else {
			s.log.ErrorContext(r.Context(), "request failed", attrs...)
		}
	}
	ctserr.Write(w, err, requestID(r), u != nil && u.Admin)
}

func jobsUser(u *auth.User) jobs.User { return jobs.User{Name: u.Name, Staff: u.Staff, Admin: u.Admin} }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
