// Package agentws is the coordinator's end of the agent websocket (shared/protocol): it
// authenticates the agent, hands it its assignment, applies its events exactly once through
// package ingest and acknowledges them, keeps the heartbeat, renews the agent's session
// credential, and pushes cancels down. It holds no job state of its own: a coordinator restart
// loses nothing, and an agent may reconnect to any replica (credentials are verified with a
// key all replicas share).
//
// Who may do what: an agent presents its per-attempt credential (package agentcred), which
// binds it to one container of one launch of one job; its hello must name that container,
// and (for a session credential) the agent attempt it was given to. The site-wide executor
// token is accepted only for an admin's dry run, which reads an assignment and can change
// nothing.
package agentws

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kbase/cts/coordinator/internal/agentcred"
	"github.com/kbase/cts/coordinator/internal/auth"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/protocol"
)

// Ingest applies what agents report (*ingest.Service).
type Ingest interface {
	Assignment(ctx context.Context, h protocol.Hello, launch int) (*protocol.Assignment, error)
	ApplyEvent(ctx context.Context, a ingest.Agent, ev protocol.Event) error
	// Touch records the last contact of agents that left (a point write each).
	Touch(ctx context.Context, ts []jobs.Touch) (int, error)
}

// Cancels tells sessions that their job is being canceled (*launch.Service).
type Cancels interface {
	WatchCancel(jobID string) (<-chan protocol.Cancel, func())
}

// Authorizer checks a KBase token (not an agent credential); it returns a *ctserr.Error when
// the token is missing, invalid, or lacks the executor role.
type Authorizer func(r *http.Request) error

// Config tunes the heartbeat.
type Config struct {
	PingInterval time.Duration // default 15 s
	ReadTimeout  time.Duration // no frame or pong for this long ends the session; default 45 s
	HelloTimeout time.Duration // default 10 s
	// Logs bounds the live log buffers (Tail, Subscribe); Logs.MaxContainers also bounds how
	// many containers' latest transfer progress is kept (Progress).
	Logs LogConfig
	// Credentials verifies the agents' credentials and mints their session credentials; nil
	// refuses every agent but dry runs.
	Credentials *agentcred.Keyring
	// SessionTTL is the lifetime of a session credential (default 1 h); it is renewed every
	// third of it.
	SessionTTL time.Duration
	// Shared, when set, makes the live logs and progress of this replica's agents readable
	// through the other replicas (see shared.go); Replica names this one, and SharedInterval
	// is how often it publishes and readers poll (default 500 ms). Run must run.
	Shared         Shared
	Replica        string
	SharedInterval time.Duration
	// HeartbeatInterval is how often the agents connected to this replica are recorded in the
	// store (Presence; default 10 s); see live.go.
	HeartbeatInterval time.Duration
	// Presence records the connected agents for the other replicas' reconcilers (nil: not
	// recorded; a single replica's reconciler asks AgentConnected).
	Presence Presence
	// StoreWork bounds how many hellos and events are applied at once across all sessions
	// (default 16): each is store work, and a burst of thousands of agents must wait here, in
	// order, rather than in the store's queue, where each operation's deadline runs.
	StoreWork int
}

// Handler serves protocol.Path.
type Handler struct {
	cfg     Config
	svc     Ingest
	cancels Cancels
	authz   Authorizer
	log     *slog.Logger
	up      websocket.Upgrader
	// ErrorWriter renders refusals before the upgrade.
	ErrorWriter func(w http.ResponseWriter, r *http.Request, err error)

	// mu guards closing and conns; a session joins wg under mu, so Wait never races an Add.
	mu       sync.Mutex
	closing  bool
	conns    map[*websocket.Conn]struct{}
	wg       sync.WaitGroup
	logs     *logBook
	progress *progressBook
	// shared is the live data across replicas (nil: this replica's agents only).
	shared *shared
	live   *liveness
	// work holds a token per hello or event being applied (Config.StoreWork).
	work chan struct{}
}

// New returns a Handler.
func New(cfg Config, svc Ingest, cancels Cancels, authz Authorizer, log *slog.Logger, errw func(http.ResponseWriter, *http.Request, error)) *Handler {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 15 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 45 * time.Second
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = time.Hour
	}
	if cfg.SharedInterval <= 0 {
		cfg.SharedInterval = 500 * time.Millisecond
	}
	var sh *shared
	if cfg.Shared != nil {
		sh = &shared{store: cfg.Shared, replica: cfg.Replica, interval: cfg.SharedInterval,
			published: map[string]string{}, renewed: map[string]time.Time{}}
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.StoreWork <= 0 {
		cfg.StoreWork = 16
	}
	return &Handler{shared: sh, cfg: cfg, svc: svc, cancels: cancels, authz: authz, log: log, ErrorWriter: errw, logs: newLogBook(cfg.Logs),
		progress: newProgressBook(cfg.Logs.MaxContainers),
		live:     newLiveness(cfg.HeartbeatInterval, cfg.Replica, cfg.Presence, svc.Touch, log),
		work:     make(chan struct{}, cfg.StoreWork),
		up:       newUpgrader(),
		conns:    map[*websocket.Conn]struct{}{}}
}

// writeBuffers is the write buffers all sessions share: a session holds one only while it
// writes a frame.
var writeBuffers = &sync.Pool{}

// newUpgrader returns the websocket upgrader of agent sessions. A session's memory is what a
// coordinator with thousands of agents pays per agent, and an agent session is idle almost
// always: it reads through the 4 KiB buffer the HTTP server already read the upgrade request
// with (ReadBufferSize 0), and writes through a pooled 4 KiB buffer (WriteBufferPool) instead
// of a buffer of its own. Frames of any size up to the read limit still pass (the buffers are
// not a bound on a frame). Dedicated 16 KiB buffers cost 32 KiB per agent, 320 MiB for 10,000.
func newUpgrader() websocket.Upgrader {
	return websocket.Upgrader{WriteBufferPool: writeBuffers}
}

// Wait ends every session and blocks until they have ended; call it once the HTTP server has
// stopped accepting (http.Server.Shutdown does not track hijacked connections). Sessions get a
// going-away close: their agents reconnect (to another replica, or to this coordinator once
// restarted) and resend what was not acknowledged. Sessions arriving later are refused.
// Without the close, agents that answer pings would keep Wait, and the shutdown, waiting for
// as long as their containers run.
func (h *Handler) Wait() {
	h.live.freeze()
	h.mu.Lock()
	h.closing = true
	for c := range h.conns {
		_ = c.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "coordinator shutting down"), time.Now().Add(time.Second))
		_ = c.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
	h.live.close()
}

// AgentConnected reports whether the agent of container n of job jobID is connected to this
// replica (of agent attempt attempt, when set): the reconciler counts it as heard from.
func (h *Handler) AgentConnected(jobID string, n int, attempt string) bool {
	return h.live.connected(jobID, n, attempt)
}

// storeWork runs f once a store work token is free (Config.StoreWork).
func (h *Handler) storeWork(f func()) {
	h.work <- struct{}{}
	defer func() { <-h.work }()
	f()
}

// Connected is the number of agent sessions open on this replica (dry runs included), for
// the connected-agents gauge.
func (h *Handler) Connected() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// identify checks the request's credential: an agent credential (its claims), or else a
// KBase token with the executor role (nil claims: dry runs only).
func (h *Handler) identify(r *http.Request) (*agentcred.Claims, error) {
	tok, err := auth.ParseAuthHeader(r.Header.Get("Authorization"))
	if err != nil || !agentcred.IsCredential(tok) {
		return nil, h.authz(r)
	}
	if h.cfg.Credentials == nil {
		return nil, ctserr.New(ctserr.CodeInvalidToken, "This coordinator accepts no agent credentials")
	}
	c, err := h.cfg.Credentials.Verify(tok)
	if err != nil {
		return nil, &ctserr.Error{Code: ctserr.CodeInvalidToken, Message: "The agent credential is not accepted: " +
			strings.TrimPrefix(err.Error(), agentcred.ErrInvalid.Error()+": "), Err: err}
	}
	return &c, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	claims, err := h.identify(r)
	if err != nil {
		h.ErrorWriter(w, r, err)
		return
	}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		h.ErrorWriter(w, r, &ctserr.StatusError{Status: http.StatusServiceUnavailable, Message: "The coordinator is shutting down"})
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()
	conn, err := h.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	h.mu.Lock()
	if h.closing { // Wait began during the upgrade
		h.mu.Unlock()
		_ = conn.Close()
		return
	}
	h.conns[conn] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.conns, conn)
		h.mu.Unlock()
	}()
	s := &session{h: h, conn: conn, log: h.log, claims: claims}
	s.run(r.Context())
}

type session struct {
	h    *Handler
	conn *websocket.Conn
	log  *slog.Logger
	// claims are the agent's credential's (nil for a dry run with the executor token).
	claims *agentcred.Claims
	wmu    sync.Mutex
	// lineTokens and lineLast are the live log lines' token bucket (limitLines).
	lineTokens float64
	lineLast   time.Time
}

func (s *session) send(body any) error {
	b, err := protocol.Encode(body)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return s.conn.WriteMessage(websocket.TextMessage, b)
}

func (s *session) fatal(msg string) {
	_ = s.send(protocol.Fatal{Message: msg})
	s.wmu.Lock()
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, ""), time.Now().Add(time.Second))
	s.wmu.Unlock()
}

func (s *session) run(parent context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	defer cancel()
	defer s.conn.Close()
	s.conn.SetReadLimit(1 << 20)

	_ = s.conn.SetReadDeadline(time.Now().Add(s.h.cfg.HelloTimeout))
	_, frame, err := s.conn.ReadMessage()
	if err != nil {
		return
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		s.fatal(err.Error())
		return
	}
	hello, ok := msg.(*protocol.Hello)
	if !ok || hello.JobID == "" || hello.Attempt == "" {
		s.fatal("the first message must be a hello with job_id and attempt")
		return
	}
	log := s.log.With("job_id", hello.JobID, "container", hello.Container, "attempt", hello.Attempt)
	launch, why := s.admit(hello)
	if why != "" {
		log.WarnContext(ctx, "agent refused", "reason", why)
		s.fatal(why)
		return
	}
	// The heartbeat: a connected agent is heard from (it answers pings or the session ends);
	// see live.go. It is from its hello on: the hello may wait long for its store work (behind
	// every event queued there), and an agent waiting for its assignment is not silent.
	// ended: its last event ended its container, or it was refused (nothing to record when it
	// goes).
	live := agentKey{hello.JobID, hello.Container, hello.Attempt}
	ended := false
	if !hello.DryRun {
		s.h.live.join(live)
		defer func() { s.h.live.leave(live, ended) }()
	}
	var a *protocol.Assignment
	s.h.storeWork(func() { a, err = s.h.svc.Assignment(ctx, *hello, launch) })
	if err != nil {
		var ce *ctserr.Error
		if errors.As(err, &ce) {
			ended = true
			log.InfoContext(ctx, "agent refused", "reason", ce.Error())
			s.fatal(ce.Error())
		} else {
			log.ErrorContext(ctx, "assignment failed", "error", err)
		}
		return
	}
	if err := s.send(a); err != nil {
		return
	}
	if hello.DryRun {
		// An admin's dry run: it gets its plan and nothing more. No heartbeat is recorded and
		// no event accepted, so a dry run can never move the job.
		log.InfoContext(ctx, "agent dry run: assignment sent")
		s.dryRun(ctx)
		return
	}
	log.InfoContext(ctx, "agent connected")
	agent := ingest.Agent{JobID: hello.JobID, Container: hello.Container, Attempt: hello.Attempt, Launch: launch, Known: &ingest.KnownJob{}}
	if err := s.sendCredential(agent); err != nil {
		return
	}

	cancels, unwatch := s.h.cancels.WatchCancel(hello.JobID)
	defer unwatch()
	// Heartbeat: ping periodically; any frame or pong extends the read deadline. The deadline
	// is extended again after a frame's store work: the session reads nothing (not even
	// pongs) while it waits for the store, and a slow store is not a silent agent.
	extend := func() { _ = s.conn.SetReadDeadline(time.Now().Add(s.h.cfg.ReadTimeout)) }
	extend()
	s.conn.SetPongHandler(func(string) error { extend(); return nil })
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.h.cfg.PingInterval)
		defer t.Stop()
		renew := time.NewTicker(s.h.cfg.SessionTTL / 3)
		defer renew.Stop()
		for {
			select {
			case <-done:
				return
			case <-renew.C:
				if err := s.sendCredential(agent); err != nil {
					return
				}
			case c := <-cancels:
				if err := s.send(c); err != nil {
					return
				}
			case <-t.C:
				s.wmu.Lock()
				err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second))
				s.wmu.Unlock()
				if err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(done); wg.Wait() }()

	for {
		_, frame, err := s.conn.ReadMessage()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				log.InfoContext(ctx, "agent disconnected", "error", err)
			}
			return
		}
		extend()
		msg, err := protocol.Decode(frame)
		if errors.Is(err, protocol.ErrUnknownType) {
			// A newer agent's best-effort message (see shared/protocol): skip it.
			log.DebugContext(ctx, "agent message of an unknown type ignored", "error", err)
			continue
		}
		if err != nil {
			s.fatal(err.Error())
			return
		}
		switch m := msg.(type) {
		case *protocol.Event:
			var err error
			s.h.storeWork(func() { err = s.h.svc.ApplyEvent(ctx, agent, *m) })
			extend()
			if err != nil {
				var ce *ctserr.Error
				if errors.As(err, &ce) || errors.Is(err, ingest.ErrRejected) {
					log.WarnContext(ctx, "agent event rejected", "seq", m.Seq, "state", m.State, "error", err)
					s.fatal(err.Error())
					return
				}
				// A store outage: do not ack; the agent resends after reconnecting.
				log.ErrorContext(ctx, "apply agent event", "seq", m.Seq, "state", m.State, "error", err)
				return
			}
			// Applying may take long (a complete event's outputs are verified in S3): the
			// agent's pongs wait in the socket meanwhile, so the deadline restarts here.
			extend()
			ended = m.State.Terminal()
			if err := s.send(protocol.Ack{Seq: m.Seq}); err != nil {
				return
			}
		case *protocol.Log:
			if m.Stream != "stdout" && m.Stream != "stderr" {
				s.fatal("log stream must be stdout or stderr")
				return
			}
			s.h.logs.add(hello.JobID, hello.Container, m.Stream, s.limitLines(m.Lines, time.Now()), time.Now())
		case *protocol.Progress:
			if why := checkProgress(m); why != "" {
				// Best effort: an insane report is dropped, not shown to the user.
				log.WarnContext(ctx, "agent progress ignored", "reason", why)
				continue
			}
			s.h.progress.set(hello.JobID, hello.Container, *m, time.Now())
		default:
			s.fatal("unexpected message from agent")
			return
		}
	}
}

// dryRun waits for the agent to close the session, refusing any event it sends.
func (s *session) dryRun(ctx context.Context) {
	_ = s.conn.SetReadDeadline(time.Now().Add(s.h.cfg.ReadTimeout))
	for {
		_, frame, err := s.conn.ReadMessage()
		if err != nil {
			return
		}
		msg, err := protocol.Decode(frame)
		if errors.Is(err, protocol.ErrUnknownType) {
			continue
		}
		if err == nil {
			switch msg.(type) {
			case *protocol.Log, *protocol.Progress:
				continue
			}
		}
		s.fatal("a dry run may not report events")
		return
	}
}
