// Package auth2 is a small but faithful KBase auth2 server for tests and dev mode: it speaks
// the real auth2 protocol (the token sent raw in the Authorization header, the JSON shapes of
// GET /, GET /api/V2/token, GET /api/V2/me and GET /api/V2/users/?list=, auth2's error JSON
// and application codes) for a configured set of users, tokens and custom roles, so the
// coordinator's production auth client runs unchanged against it.
//
// It owns only that fake service. It must never be used on a production path: it has no
// persistence, no login flows, no admin API, and tokens are compared in memory.
//
// What is modelled, from kbase/auth2:
//   - Tokens are trimmed; a missing or blank Authorization header is 401 appcode 10010
//     ("10010 No authentication token: No user token provided"); an unknown token is 401
//     appcode 10020 ("10020 Invalid token").
//   - User names follow auth2's UserName rules: 1 to 100 characters of a-z, 0-9 and _, the
//     first a letter. /api/V2/users/ rejects an illegal name with 400 appcode 30010 and
//     auth2's nested message ("30010 Illegal user name: Illegal user name [x]: 30010 Illegal
//     user name: Illegal character in user name x: X"), which clients cut after the third ':'.
//   - Token replies carry cachefor, the suggested cache time in milliseconds (default 5 min,
//     auth2's default; see SetCacheFor).
//   - Unknown paths give auth2's 404 error JSON without an appcode; wrong methods give 405.
//
// Not modelled: disabled users, token expiry (tokens expire 14 days after they were added,
// and the expiry is reported but never enforced), MFA status, login, linking, admin endpoints.
package auth2

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The paths the server answers, as counted by Requests. PathUsers is counted for both
// "/api/V2/users" and "/api/V2/users/".
const (
	PathRoot  = "/"
	PathToken = "/api/V2/token"
	PathMe    = "/api/V2/me"
	PathUsers = "/api/V2/users/"
)

// ServiceName is the servicename auth2 reports at its root; clients check it.
const ServiceName = "Authentication Service"

// Version is the auth2 version the server reports at its root.
const Version = "0.7.2"

// DefaultCacheFor is auth2's default suggested token cache time.
const DefaultCacheFor = 5 * time.Minute

// tokenLifetime is how far in the future the reported expiry of a token lies.
const tokenLifetime = 14 * 24 * time.Hour

// User is one configured auth2 account and one of its tokens. Name must be a legal auth2
// user name (see ValidateUserName) and Token non-blank. DisplayName defaults to Name.
// CustomRoles are auth2 custom role IDs, for example "KBASE_STAFF".
type User struct {
	Name        string
	Token       string
	DisplayName string
	CustomRoles []string
}

type account struct {
	name        string
	display     string
	customRoles []string
	anonID      string
	created     time.Time
}

type tokenInfo struct {
	id      string
	user    string
	created time.Time
}

// Server is the fake auth2 service. Its methods are safe for concurrent use.
type Server struct {
	mu       sync.Mutex
	accounts map[string]*account
	tokens   map[string]tokenInfo
	cacheFor time.Duration
	fault    int
	requests map[string]int

	srv      *http.Server
	url      string
	started  bool
	closed   bool
	serveErr error
	done     chan struct{}
	stop     chan struct{}
}

// New returns a server holding the given users; Start makes it listen. New panics if a user
// is invalid (see AddUser).
func New(users ...User) *Server {
	s := &Server{
		accounts: map[string]*account{},
		tokens:   map[string]tokenInfo{},
		cacheFor: DefaultCacheFor,
		requests: map[string]int{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for _, u := range users {
		s.AddUser(u)
	}
	return s
}

// AddUser adds a user, or, when an account of that name exists, replaces its display name and
// custom roles and adds u.Token as another token of that account. It panics if u.Name is not a
// legal auth2 user name or u.Token is blank: configured users are fixed by the caller, who can
// check names first with ValidateUserName.
func (s *Server) AddUser(u User) {
	if err := ValidateUserName(u.Name); err != nil {
		panic(fmt.Sprintf("auth2: add user: %v", err))
	}
	tok := javaTrim(u.Token)
	if tok == "" {
		panic(fmt.Sprintf("auth2: add user %s: blank token", u.Name))
	}
	display := u.DisplayName
	if display == "" {
		display = u.Name
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[u.Name]
	if !ok {
		a = &account{name: u.Name, anonID: uuid.NewString(), created: now}
		s.accounts[u.Name] = a
	}
	a.display = display
	a.customRoles = append([]string(nil), u.CustomRoles...)
	s.tokens[tok] = tokenInfo{id: uuid.NewString(), user: u.Name, created: now}
}

// RevokeToken makes token invalid, as if its owner had logged out. It reports whether the
// token existed.
func (s *Server) RevokeToken(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	token = javaTrim(token)
	_, ok := s.tokens[token]
	delete(s.tokens, token)
	return ok
}

// SetCacheFor sets the cachefor value of token replies (auth2's suggested token cache time).
// It is sent in milliseconds; d is truncated to whole milliseconds.
func (s *Server) SetCacheFor(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cacheFor = d
}

// FailWith makes every later request fail with the given HTTP status (for example 500 or 503)
// and an auth2 error JSON without an appcode, as a broken auth2 behind a proxy would; 0
// restores normal service. Failed requests are still counted.
func (s *Server) FailWith(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = status
}

// Requests returns how many requests reached path (one of the Path constants, or any other
// request path, without the query), counting failed ones.
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

// Start listens on a free loopback port and serves until Close is called or ctx is done. It
// fails if the server was already started or closed.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("auth2: start: already started or closed")
	}
	s.started = true
	s.mu.Unlock()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		close(s.done)
		return fmt.Errorf("auth2: listen: %w", err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.url = "http://" + ln.Addr().String() + "/"
	s.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		err := srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			s.mu.Lock()
			s.serveErr = err
			s.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-s.stop:
		}
		_ = srv.Close()
	}()
	go func() {
		wg.Wait()
		close(s.done)
	}()
	return nil
}

// URL is the service root, always ending in "/" (the form KBase auth clients normalise a base
// URL to), for example "http://127.0.0.1:41234/". API paths are URL() + "api/V2/token" and so
// on. It is empty before Start.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Close stops the server and waits for it to finish. It is idempotent, and safe to call on a
// server that was never started. It returns the serve error, if serving failed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		err := s.serveErr
		s.mu.Unlock()
		if s.started {
			<-s.done
		}
		return err
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	close(s.stop)
	if !started {
		return nil
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serveErr
}

// ServeHTTP routes a request; Server is an http.Handler so it can also be mounted by hand.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "/api/V2/users" {
		path = PathUsers
	}
	s.mu.Lock()
	s.requests[path]++
	fault := s.fault
	s.mu.Unlock()

	if fault != 0 {
		writeError(w, &apiError{status: fault, message: "HTTP " + fmt.Sprint(fault) + " " +
			http.StatusText(fault)})
		return
	}
	var handler func(*http.Request) (any, *apiError)
	switch path {
	case PathRoot:
		handler = s.root
	case PathToken:
		handler = s.token
	case PathMe:
		handler = s.me
	case PathUsers:
		handler = s.users
	default:
		writeError(w, &apiError{status: http.StatusNotFound, message: "HTTP 404 Not Found"})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		writeError(w, &apiError{status: http.StatusMethodNotAllowed,
			message: "HTTP 405 Method Not Allowed"})
		return
	}
	body, aerr := handler(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) root(*http.Request) (any, *apiError) {
	return map[string]any{
		"version":       Version,
		"servertime":    time.Now().UnixMilli(),
		"gitcommithash": "cts-devstack",
		"servicename":   ServiceName,
	}, nil
}

// authenticate resolves the request's token; the caller holds no lock.
func (s *Server) authenticate(r *http.Request) (tokenInfo, *account, *apiError) {
	tok := javaTrim(r.Header.Get("Authorization"))
	if tok == "" {
		return tokenInfo{}, nil, &apiError{status: http.StatusUnauthorized, appCode: 10010,
			appError: "No authentication token", detail: "No user token provided"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ti, ok := s.tokens[tok]
	if !ok {
		return tokenInfo{}, nil, &apiError{status: http.StatusUnauthorized, appCode: 10020,
			appError: "Invalid token"}
	}
	a := *s.accounts[ti.user]
	a.customRoles = append([]string{}, a.customRoles...)
	return ti, &a, nil
}

func (s *Server) token(r *http.Request) (any, *apiError) {
	ti, _, aerr := s.authenticate(r)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	cacheFor := s.cacheFor.Milliseconds()
	s.mu.Unlock()
	return map[string]any{
		"type":     "Login",
		"id":       ti.id,
		"expires":  ti.created.Add(tokenLifetime).UnixMilli(),
		"created":  ti.created.UnixMilli(),
		"name":     nil,
		"user":     ti.user,
		"custom":   map[string]string{},
		"cachefor": cacheFor,
	}, nil
}

func (s *Server) me(r *http.Request) (any, *apiError) {
	_, a, aerr := s.authenticate(r)
	if aerr != nil {
		return nil, aerr
	}
	return map[string]any{
		"user":        a.name,
		"anonid":      a.anonID,
		"local":       true,
		"display":     a.display,
		"email":       nil,
		"created":     a.created.UnixMilli(),
		"lastlogin":   a.created.UnixMilli(),
		"customroles": a.customRoles,
		"roles":       []any{},
		"idents":      []any{},
		"policyids":   []any{},
	}, nil
}

func (s *Server) users(r *http.Request) (any, *apiError) {
	// auth2 parses the list before it checks the token.
	var names []string
	if list := r.URL.Query().Get("list"); javaTrim(list) != "" {
		for _, u := range javaSplitComma(list) {
			name := javaTrim(u)
			if err := ValidateUserName(name); err != nil {
				return nil, &apiError{status: http.StatusBadRequest, appCode: 30010,
					appError: "Illegal user name",
					detail:   fmt.Sprintf("Illegal user name [%s]: %s", u, err.Error())}
			}
			names = append(names, name)
		}
	}
	if _, _, aerr := s.authenticate(r); aerr != nil {
		return nil, aerr
	}
	out := map[string]string{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if a, ok := s.accounts[n]; ok {
			out[n] = a.display
		}
	}
	return out, nil
}

// javaTrim is Java's String.trim: it strips code points up to ' ' (space and ASCII controls),
// which is what auth2 applies to tokens and user names.
func javaTrim(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r <= ' ' })
}

// javaSplitComma splits like Java's String.split(","): trailing empty strings are dropped.
func javaSplitComma(s string) []string {
	parts := strings.Split(s, ",")
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return parts
}

// NameError is an auth2 user name failure; Error gives auth2's exception message, with the
// application code and text in front, e.g. "30010 Illegal user name: Illegal character in
// user name Bob: B".
type NameError struct {
	AppCode  int
	AppError string
	Detail   string
}

// Error returns auth2's exception message.
func (e *NameError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.AppCode, e.AppError, e.Detail)
}

// ValidateUserName applies auth2's UserName rules (after trimming, as auth2 does): present,
// at most 100 code points, no control characters, only a-z, 0-9 and _, and a letter first.
// The error is a *NameError with auth2's code and message.
func ValidateUserName(name string) error {
	name = javaTrim(name)
	switch {
	case name == "":
		return &NameError{30000, "Missing input parameter", "user name"}
	case utf8.RuneCountInString(name) > 100:
		return &NameError{30001, "Illegal input parameter", "user name size greater than limit 100"}
	case strings.IndexFunc(name, isISOControl) >= 0:
		return &NameError{30001, "Illegal input parameter", "user name contains control characters"}
	}
	if i := strings.IndexFunc(name, notNameChar); i >= 0 {
		run := name[i:]
		if j := strings.IndexFunc(run, func(r rune) bool { return !notNameChar(r) }); j >= 0 {
			run = run[:j]
		}
		return &NameError{30010, "Illegal user name",
			fmt.Sprintf("Illegal character in user name %s: %s", name, run)}
	}
	if name[0] < 'a' || name[0] > 'z' {
		return &NameError{30010, "Illegal user name", "Username must start with a letter"}
	}
	return nil
}

func notNameChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
}

// isISOControl is Java's Character.isISOControl.
func isISOControl(r rune) bool { return r <= 0x1f || r >= 0x7f && r <= 0x9f }

// apiError is one auth2 error reply. detail is the exception's own message; auth2 prefixes it
// with the code and text ("10020 Invalid token: detail"), and uses the bare prefix when detail
// is empty.
type apiError struct {
	status   int
	appCode  int
	appError string
	detail   string
	message  string // used as is when appCode is 0 (a plain HTTP error)
}

type errorBody struct {
	HTTPCode   int    `json:"httpcode"`
	HTTPStatus string `json:"httpstatus"`
	AppCode    int    `json:"appcode,omitempty"`
	AppError   string `json:"apperror,omitempty"`
	Message    string `json:"message,omitempty"`
	CallID     string `json:"callid"`
	Time       int64  `json:"time"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	msg := e.message
	if e.appCode != 0 {
		msg = fmt.Sprintf("%d %s", e.appCode, e.appError)
		if javaTrim(e.detail) != "" {
			msg += ": " + e.detail
		}
	}
	writeJSON(w, e.status, map[string]errorBody{"error": {
		HTTPCode:   e.status,
		HTTPStatus: http.StatusText(e.status),
		AppCode:    e.appCode,
		AppError:   e.appError,
		Message:    msg,
		CallID:     callID(),
		Time:       time.Now().UnixMilli(),
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps of strings, numbers and slices are marshalled here.
		panic(fmt.Sprintf("auth2: marshal reply: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// callID is a 16-digit random call ID, like the one auth2 puts in error replies and logs.
func callID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e16))
	if err != nil {
		return "0000000000000000"
	}
	return fmt.Sprintf("%016d", n)
}
