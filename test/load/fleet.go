package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/gorilla/websocket"

	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/test/load/simlaunch"
)

// FleetConfig configures the simulated agents.
type FleetConfig struct {
	// S3 uploads each container's output (a few bytes with its CRC64/NVME): the coordinator
	// checks every output in S3 before a job may complete.
	S3 *s3.Client
	// URL, when set, picks the coordinator URL an agent dials instead of the launch's
	// SERVICE_ROOT_URL (tests pin agents to one replica with it).
	URL func(jobID string, container int) string
	// Workers run the agents' actions (default 64): they bound how many writes and uploads
	// happen at once. Dials bounds the connections being opened at once (default 256), apart.
	Workers int
	Dials   int
	// StartJitter spreads the agents' first connection after a launch over [0, StartJitter)
	// (default 2 s), as a batch system starts a job's containers over a moment.
	StartJitter time.Duration
	// Think is the most an agent waits between two steps (default 200 ms; a random part of
	// it each time).
	Think time.Duration
	// LogInterval is how often a running container sends a batch of LogLines live log lines
	// (defaults 10 s and 2).
	LogInterval time.Duration
	LogLines    int
	// RunFor is about how long a container runs (between half and one and a half times it);
	// 0 holds every container until Release.
	RunFor time.Duration
	// AckTimeout is how long an event may wait for its acknowledgement on a live connection
	// before the agent drops the connection and resends (default 60 s, as cts-agent).
	AckTimeout time.Duration
	// KillGrace is how long after the launcher's Cancel an agent that has not ended is killed
	// (its connection dropped, nothing more sent), as a batch system's SIGKILL (default 10 s).
	KillGrace time.Duration
	// MaxBackoff bounds the wait between reconnects (default 30 s, as cts-agent: the wait is
	// random below 500 ms, doubled after each failure up to MaxBackoff).
	MaxBackoff time.Duration
}

func (c *FleetConfig) defaults() {
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.Dials <= 0 {
		c.Dials = 256
	}
	if c.StartJitter <= 0 {
		c.StartJitter = 2 * time.Second
	}
	if c.Think <= 0 {
		c.Think = 200 * time.Millisecond
	}
	if c.LogInterval <= 0 {
		c.LogInterval = 10 * time.Second
	}
	if c.LogLines <= 0 {
		c.LogLines = 2
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 60 * time.Second
	}
	if c.KillGrace <= 0 {
		c.KillGrace = 10 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
}

// Fleet runs simulated agents: it is the backend of the sim launcher plugin (a launch starts
// one agent per container, with the launch's environment), and each agent speaks the agent
// protocol (shared/protocol) to the coordinator as cts-agent does: its container's launch
// credential (then the session credential the coordinator renews) on the websocket upgrade, hello, assignment, events with sequence numbers that wait for
// their acknowledgement and are resent after a reconnect, live log lines and progress,
// pongs to the coordinator's pings, cancel. It runs no container and moves no data but a
// tiny output per container.
type Fleet struct {
	cfg    FleetConfig
	s      *sched
	dialer websocket.Dialer
	dials  chan struct{} // a token per connection being opened (FleetConfig.Dials)
	stats  *Stats

	// held: containers run until Release (RunFor 0); fixed at NewFleet. released and spread
	// are set once by Release (spread first); an agent reads them under its own lock, never
	// under mu.
	held     bool
	released atomic.Bool
	spread   atomic.Int64 // time.Duration

	// mu guards the launches and the agent list. Lock order: never hold mu and an agent's mu
	// at once, in either order. An agent's reader holds its agent's mu while it handles an
	// acknowledgement, and the launcher's calls (Status, Cleanup) look at thousands of agents:
	// holding mu while waiting for an agent's mu, with a reader holding that agent's mu while
	// waiting for mu, stopped the whole generator (no event, no connect, no launcher call
	// answered) once the reconciler's Status met the ramp's acknowledgements.
	mu       sync.Mutex
	launches map[string]*launch // by job ID + "/" + attempt
	byJob    map[string][]*launch
	agents   []*agent
	tokens   map[string]string // token file contents by path
}

// launch is one Submit: the agents of one attempt of a job.
type launch struct {
	jobID    string
	attempt  int
	handle   string
	agents   []*agent
	canceled bool
	cleaned  bool
}

// NewFleet returns a fleet; Run starts its workers.
func NewFleet(cfg FleetConfig, stats *Stats) *Fleet {
	cfg.defaults()
	return &Fleet{cfg: cfg, s: newSched(), stats: stats, dials: make(chan struct{}, cfg.Dials),
		// Small buffers: the generator holds as many connections as the coordinator.
		dialer:   websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 2048, WriteBufferSize: 2048, WriteBufferPool: &sync.Pool{}},
		launches: map[string]*launch{}, byJob: map[string][]*launch{}, tokens: map[string]string{}, held: cfg.RunFor <= 0}
}

// Run runs the fleet's scheduler and workers until ctx ends.
func (f *Fleet) Run(ctx context.Context) { f.s.run(ctx, f.cfg.Workers) }

// Release lets every held container finish, the fleet's releases spread evenly over spread.
func (f *Fleet) Release(spread time.Duration) {
	f.spread.Store(int64(spread))
	f.released.Store(true)
	f.mu.Lock()
	agents := slices.Clone(f.agents)
	f.mu.Unlock()
	for _, a := range agents {
		a.mu.Lock()
		running := a.running && !a.finishing
		if running {
			a.finishing = true
		}
		a.mu.Unlock()
		if running {
			f.s.after(jitter(spread), a.finish)
		}
	}
}

// Drop breaks the connections of up to n connected agents picked at random, as a network
// failure would: they reconnect and resend what was not acknowledged.
func (f *Fleet) Drop(n int) int {
	f.mu.Lock()
	agents := slices.Clone(f.agents)
	f.mu.Unlock()
	rand.Shuffle(len(agents), func(i, j int) { agents[i], agents[j] = agents[j], agents[i] })
	dropped := 0
	for _, a := range agents {
		if dropped >= n {
			break
		}
		a.mu.Lock()
		c := a.conn
		a.mu.Unlock()
		if c != nil {
			_ = c.Close()
			dropped++
		}
	}
	return dropped
}

// Agents returns every agent started so far.
func (f *Fleet) Agents() []*agent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.agents)
}

// JobAgents returns the agents of every launch of a job.
func (f *Fleet) JobAgents(jobID string) []*agent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*agent
	for _, l := range f.byJob[jobID] {
		out = append(out, l.agents...)
	}
	return out
}

// Submit implements simlaunch.Backend: the first Submit of (job, attempt) starts one agent per
// container; a repeat returns the same handle.
func (f *Fleet) Submit(_ context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	if err := req.Validate(); err != nil {
		return launcher.SubmitResponse{}, err
	}
	key := req.JobID + "/" + strconv.Itoa(req.Attempt)
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.launches[key]; ok {
		if len(l.agents) != req.Containers {
			return launcher.SubmitResponse{}, fmt.Errorf("%w: %s was launched with %d containers", launcher.ErrConflict, key, len(l.agents))
		}
		return launcher.SubmitResponse{Handle: l.handle, Existing: true}, nil
	}
	l := &launch{jobID: req.JobID, attempt: req.Attempt, handle: "sim-" + key}
	for c := range req.Containers {
		env := make(map[string]string, len(req.Env)+2)
		for k, v := range req.Env {
			env[k] = v
		}
		attempt := fmt.Sprintf("sim-%s-%d-%d", req.JobID, req.Attempt, c)
		env[launcher.EnvContainerNumber] = strconv.Itoa(c)
		env[launcher.EnvAgentAttempt] = attempt
		a := &agent{f: f, l: l, jobID: req.JobID, container: c, attempt: attempt, env: env, nextSeq: 1, launched: time.Now()}
		if c < len(req.Credentials) {
			// What a batch system hands the container privately (a 0600 file for cts-agent).
			a.cred = req.Credentials[c]
		}
		l.agents = append(l.agents, a)
		f.agents = append(f.agents, a)
		f.s.after(jitter(f.cfg.StartJitter), a.connect)
	}
	f.launches[key] = l
	f.byJob[req.JobID] = append(f.byJob[req.JobID], l)
	f.stats.Launches.Add(1)
	return launcher.SubmitResponse{Handle: l.handle}, nil
}

func (f *Fleet) launchOf(ref launcher.JobRef) (*launch, error) {
	for _, l := range f.byJob[ref.JobID] {
		if l.handle == ref.Handle {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: job %s handle %q", launcher.ErrNotFound, ref.JobID, ref.Handle)
}

// Status implements simlaunch.Backend. It reads the launches under mu and the agents after
// (see Fleet.mu).
func (f *Fleet) Status(_ context.Context, refs []launcher.JobRef) ([]simlaunch.JobStatus, error) {
	out := make([]simlaunch.JobStatus, len(refs))
	type found struct {
		l        *launch
		canceled bool
	}
	ls := make([]found, len(refs))
	f.mu.Lock()
	for i, ref := range refs {
		out[i].JobID = ref.JobID
		l, err := f.launchOf(ref)
		if err != nil || l.cleaned {
			out[i].NotFound = true
			continue
		}
		ls[i] = found{l, l.canceled}
	}
	f.mu.Unlock()
	for i, fl := range ls {
		if fl.l == nil {
			continue
		}
		for _, a := range fl.l.agents { // fixed at Submit
			out[i].Containers = append(out[i].Containers, a.status(fl.canceled))
		}
	}
	return out, nil
}

// Cancel implements simlaunch.Backend: agents still running KillGrace later are killed.
func (f *Fleet) Cancel(_ context.Context, ref launcher.JobRef) error {
	f.mu.Lock()
	l, err := f.launchOf(ref)
	if err == nil && !l.canceled {
		l.canceled = true
		for _, a := range l.agents {
			f.s.after(f.cfg.KillGrace, a.kill)
		}
	}
	f.mu.Unlock()
	if errors.Is(err, launcher.ErrNotFound) {
		return nil // gone is success
	}
	return err
}

// Cleanup implements simlaunch.Backend. It looks at the agents without holding mu (see
// Fleet.mu): an agent that is done stays done.
func (f *Fleet) Cleanup(_ context.Context, ref launcher.JobRef) error {
	f.mu.Lock()
	l, err := f.launchOf(ref)
	f.mu.Unlock()
	if errors.Is(err, launcher.ErrNotFound) {
		return nil
	}
	for _, a := range l.agents { // fixed at Submit
		if !a.isDone() {
			return fmt.Errorf("%w: container %d of %s still runs", launcher.ErrConflict, a.container, ref.JobID)
		}
	}
	f.mu.Lock()
	l.cleaned = true
	f.mu.Unlock()
	return nil
}

// token returns the contents of the token file at path, read once.
func (f *Fleet) token(path string) (string, error) {
	f.mu.Lock()
	tok, ok := f.tokens[path]
	f.mu.Unlock()
	if ok {
		return tok, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	tok = strings.TrimSpace(string(b))
	f.mu.Lock()
	f.tokens[path] = tok
	f.mu.Unlock()
	return tok, nil
}

// The plan of a container that runs to the end: the events it reports, in order. The
// container "runs" between job_submitted and upload_submitting.
var plan = []job.State{job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted, job.Complete}

// SentEvent is one event an agent sent, as the generator saw it.
type SentEvent struct {
	Seq   int64
	State job.State
	// Acked: the coordinator acknowledged it (on the connection, or by a later assignment's
	// NextSeq after a reconnect). Rejected: the coordinator refused it (fatal).
	Acked, Rejected bool
}

// agent is one simulated cts-agent: one attempt of one container.
type agent struct {
	f         *Fleet
	l         *launch
	jobID     string
	container int
	attempt   string
	env       map[string]string
	launched  time.Time
	// cred is what the agent presents on the upgrade: its launch credential, then the newest
	// session credential the coordinator gave (as cts-agent); the worker token of TOKEN_PATH
	// when the launch carried no credential.
	cred string

	wmu sync.Mutex // serialises writes on conn

	mu          sync.Mutex
	conn        *websocket.Conn
	gen         int // connection generation, to tell a stale reader from the current one
	everOnline  bool
	online      bool // a session is open (assignment received)
	outputDir   string
	nextSeq     int64
	step        int // index in plan of the next event
	pending     *protocol.Event
	pendingAt   time.Time
	sent        []SentEvent
	running     bool // between job_submitted and upload_submitting
	finishing   bool // the finish is scheduled
	cancelAt    time.Time
	canceling   bool // reporting error after a cancel
	failures    int  // connection attempts in a row that failed
	done        bool
	outcome     string // complete, canceled, refused, killed
	fatal       string
	endedAt     time.Time
	cancelFrame int // Cancel frames received
}

// Outcome says how the agent ended ("" while it runs): complete, canceled (it reported error
// after the coordinator's cancel), refused (the coordinator sent fatal), or killed (the
// launcher's cancel ended it).
func (a *agent) Outcome() (string, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.outcome, a.fatal
}

// Sent returns the events the agent sent.
func (a *agent) Sent() []SentEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.sent)
}

// CancelReceived is when the first Cancel frame arrived (zero if none).
func (a *agent) CancelReceived() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cancelAt
}

func (a *agent) isDone() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.done
}

func (a *agent) status(canceled bool) launcher.ContainerStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	cs := launcher.ContainerStatus{Container: a.container, Attempt: a.attempt, State: launcher.StateIdle, Started: a.launched}
	zero := 0
	switch {
	case a.done && canceled:
		cs.State, cs.Ended = launcher.StateRemoved, a.endedAt
	case a.done:
		cs.State, cs.ExitCode, cs.Ended = launcher.StateExited, &zero, a.endedAt
	case a.everOnline || a.failures > 0:
		cs.State = launcher.StateRunning
	}
	return cs
}

func (a *agent) wsURL() string {
	u := a.env["SERVICE_ROOT_URL"]
	if a.f.cfg.URL != nil {
		u = a.f.cfg.URL(a.jobID, a.container)
	}
	u = strings.TrimSuffix(u, "/")
	if rest, ok := strings.CutPrefix(u, "https://"); ok {
		u = "wss://" + rest
	} else if rest, ok := strings.CutPrefix(u, "http://"); ok {
		u = "ws://" + rest
	}
	return u + protocol.Path
}

// connect opens a session (connectNow) on a goroutine of its own, at most Dials at once: a
// session's handshake waits for the coordinator's answer to the hello, which under load waits
// behind every event queued there, and holding a step worker meanwhile stopped the connected
// agents' events (every worker waiting in a handshake during a reconnect storm).
func (a *agent) connect() {
	go func() {
		a.f.dials <- struct{}{}
		defer func() { <-a.f.dials }()
		a.connectNow()
	}()
}

// connectNow opens a session: upgrade with the token, hello, assignment. On success the reader
// runs and the agent resumes where it was: resending the unacknowledged event, or taking the
// next step.
func (a *agent) connectNow() {
	f := a.f
	a.mu.Lock()
	if a.done || a.conn != nil {
		a.mu.Unlock()
		return
	}
	tok := a.cred
	a.mu.Unlock()
	if tok == "" {
		var err error
		if tok, err = f.token(a.env["TOKEN_PATH"]); err != nil {
			a.end("refused", err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, resp, err := f.dialer.DialContext(ctx, a.wsURL(), http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
			a.end("refused", fmt.Sprintf("websocket upgrade: %s", resp.Status))
			return
		}
		a.retry()
		return
	}
	a.mu.Lock()
	hello := protocol.Hello{JobID: a.jobID, Container: a.container, Attempt: a.attempt, AgentVersion: "load-sim"}
	a.mu.Unlock()
	asg, fatal, err := handshake(conn, hello)
	if fatal != "" {
		// Refused at the hello (e.g. its job has ended): the event that waited for its
		// acknowledgement is refused with the agent, as in onFatal.
		_ = conn.Close()
		a.rejectPending()
		a.f.stats.Fatals.Add(1)
		a.end("refused", fatal)
		return
	}
	if err != nil {
		_ = conn.Close()
		a.retry()
		return
	}
	a.mu.Lock()
	if a.done {
		a.mu.Unlock()
		_ = conn.Close()
		return
	}
	if !a.everOnline && asg.ContainerState != "" && asg.ContainerState != job.DownloadSubmitted {
		// cts-agent refuses to start a container another attempt started.
		a.mu.Unlock()
		_ = conn.Close()
		a.end("refused", "container already "+string(asg.ContainerState))
		return
	}
	a.conn, a.gen, a.online, a.everOnline, a.failures = conn, a.gen+1, true, true, 0
	a.outputDir = asg.OutputDir
	gen := a.gen
	var applied int64
	resend := a.pending
	if a.pending != nil && a.pending.Seq < asg.NextSeq {
		// Applied before the connection broke; the acknowledgement was lost with it.
		applied, resend = a.pending.Seq, nil
	}
	a.nextSeq = max(a.nextSeq, asg.NextSeq)
	a.mu.Unlock()
	a.f.stats.online(1)
	go a.read(conn, gen)
	switch {
	case applied > 0:
		a.handleAck(applied, false)
	case resend != nil:
		a.f.stats.Resent.Add(1)
		a.writeEvent(conn, *resend)
	default:
		a.next()
	}
}

// handshake says hello and reads the assignment; fatal is the coordinator's refusal.
func handshake(conn *websocket.Conn, hello protocol.Hello) (*protocol.Assignment, string, error) {
	b, err := protocol.Encode(hello)
	if err != nil {
		return nil, "", err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return nil, "", err
	}
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	_, frame, err := conn.ReadMessage()
	if err != nil {
		return nil, "", err
	}
	_ = conn.SetReadDeadline(time.Time{})
	msg, err := protocol.Decode(frame)
	if err != nil {
		return nil, "", err
	}
	switch m := msg.(type) {
	case *protocol.Assignment:
		return m, "", nil
	case *protocol.Fatal:
		return nil, m.Message, nil
	}
	return nil, "", fmt.Errorf("unexpected %T before the assignment", msg)
}

// retry schedules a reconnect with cts-agent's backoff: a random wait below 500 ms doubled
// after each failure in a row, up to MaxBackoff.
func (a *agent) retry() {
	a.mu.Lock()
	a.failures++
	n := a.failures
	done := a.done
	a.mu.Unlock()
	if done {
		return
	}
	a.f.stats.ConnectFailures.Add(1)
	d := min(a.f.cfg.MaxBackoff, 500*time.Millisecond<<min(n, 10))
	a.f.s.after(jitter(d), a.connect)
}

// read handles what the coordinator sends on one connection until it breaks. The default
// ping handler answers pings while it reads.
func (a *agent) read(conn *websocket.Conn, gen int) {
	for {
		_, frame, err := conn.ReadMessage()
		if err != nil {
			a.lost(conn, gen)
			return
		}
		msg, err := protocol.Decode(frame)
		if errors.Is(err, protocol.ErrUnknownType) {
			continue
		}
		if err != nil {
			a.f.stats.ProtocolErrors.Add(1)
			_ = conn.Close()
			continue
		}
		switch m := msg.(type) {
		case *protocol.Ack:
			a.handleAck(m.Seq, true)
		case *protocol.Credential:
			if m.Token != "" {
				a.mu.Lock()
				a.cred = m.Token
				a.mu.Unlock()
			}
		case *protocol.Cancel:
			a.onCancel()
		case *protocol.Fatal:
			a.onFatal(m.Message)
		}
	}
}

// lost handles a broken connection: reconnect unless the agent has ended.
func (a *agent) lost(conn *websocket.Conn, gen int) {
	a.mu.Lock()
	current := a.gen == gen && a.conn == conn
	if current {
		a.conn, a.online = nil, false
	}
	done := a.done
	a.mu.Unlock()
	_ = conn.Close()
	if !current {
		return
	}
	a.f.stats.online(-1)
	if done {
		return
	}
	a.f.stats.Reconnects.Add(1)
	a.f.s.after(jitter(500*time.Millisecond), a.connect)
}

// next takes the agent's next step after an acknowledgement (or a new session).
func (a *agent) next() {
	a.mu.Lock()
	if a.done || a.pending != nil || a.conn == nil {
		a.mu.Unlock()
		return
	}
	conn := a.conn
	if a.canceling {
		ev := a.newEventLocked(job.Error)
		ev.Error, ev.AdminError = "The job was canceled.", "canceled by the coordinator (load generator)"
		a.mu.Unlock()
		a.writeEvent(conn, ev)
		return
	}
	if a.step >= len(plan) {
		a.mu.Unlock()
		return
	}
	st := plan[a.step]
	if a.running {
		a.mu.Unlock()
		return // finish takes it from here
	}
	ev := a.newEventLocked(st)
	outDir := a.outputDir
	a.mu.Unlock()
	switch st {
	case job.JobSubmitting:
		a.progress(conn, protocol.PhaseDownload)
	case job.UploadSubmitted:
		a.progress(conn, protocol.PhaseUpload)
	case job.Complete:
		out, err := a.upload(outDir)
		if err != nil {
			a.f.stats.UploadErrors.Add(1)
			a.f.s.after(time.Second, a.next) // as cts-agent retries an upload
			a.mu.Lock()
			a.nextSeq-- // the event was not sent
			a.mu.Unlock()
			return
		}
		ev.Outputs = []protocol.OutputFile{out}
	}
	a.writeEvent(conn, ev)
}

// newEventLocked makes the next event; the caller holds mu.
func (a *agent) newEventLocked(st job.State) protocol.Event {
	ev := protocol.Event{Seq: a.nextSeq, State: st, Time: time.Now()}
	a.nextSeq++
	if st == job.UploadSubmitting {
		zero := 0
		ev.ExitCode = &zero
	}
	return ev
}

// writeEvent records ev as pending and sends it; the acknowledgement arrives on the reader.
func (a *agent) writeEvent(conn *websocket.Conn, ev protocol.Event) {
	b, err := protocol.Encode(ev)
	if err != nil {
		panic(err) // our own event: a bug
	}
	a.mu.Lock()
	if a.pending == nil || a.pending.Seq != ev.Seq {
		a.sent = append(a.sent, SentEvent{Seq: ev.Seq, State: ev.State})
		a.f.stats.EventsSent.Add(1)
	}
	a.pending, a.pendingAt = &ev, time.Now()
	gen := a.gen
	a.mu.Unlock()
	if err := a.write(conn, b); err != nil {
		_ = conn.Close() // the reader notices and reconnects; the event is resent
		return
	}
	a.f.s.after(a.f.cfg.AckTimeout, func() {
		a.mu.Lock()
		stale := a.gen == gen && a.pending != nil && a.pending.Seq == ev.Seq && a.conn == conn
		a.mu.Unlock()
		if stale {
			a.f.stats.AckTimeouts.Add(1)
			_ = conn.Close()
		}
	})
}

func (a *agent) write(conn *websocket.Conn, b []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return conn.WriteMessage(websocket.TextMessage, b)
}

// send writes a best-effort message (log, progress).
func (a *agent) send(conn *websocket.Conn, body any) {
	b, err := protocol.Encode(body)
	if err != nil {
		panic(err)
	}
	if a.write(conn, b) != nil {
		_ = conn.Close()
	}
}

func (a *agent) progress(conn *websocket.Conn, phase string) {
	total := int64(1 << 20)
	a.send(conn, protocol.Progress{Phase: phase, BytesDone: total / 2, BytesTotal: total, FilesDone: 0, FilesTotal: 1})
	a.send(conn, protocol.Progress{Phase: phase, BytesDone: total, BytesTotal: total, FilesDone: 1, FilesTotal: 1})
	a.f.stats.Progress.Add(2)
}

// upload puts the container's output into the job's output folder with its CRC64/NVME.
func (a *agent) upload(outputDir string) (protocol.OutputFile, error) {
	bucket, prefix, _ := strings.Cut(outputDir, "/")
	key := prefix + fmt.Sprintf("container-%d.txt", a.container)
	data := []byte(fmt.Sprintf("output of container %d of job %s (%s)\n", a.container, a.jobID, a.attempt))
	crc := checksum.Encode(checksum.Sum(data))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := a.f.cfg.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), ChecksumAlgorithm: types.ChecksumAlgorithmCrc64nvme,
		ChecksumCRC64NVME: aws.String(crc),
	})
	if err != nil {
		return protocol.OutputFile{}, fmt.Errorf("upload output: %w", err)
	}
	return protocol.OutputFile{File: bucket + "/" + key, CRC64NVME: crc}, nil
}

// handleAck handles the acknowledgement of event seq: on the connection (onConn), or by the
// NextSeq of a new session's assignment.
func (a *agent) handleAck(seq int64, onConn bool) {
	a.mu.Lock()
	if a.pending == nil || a.pending.Seq != seq {
		a.mu.Unlock()
		return // a duplicate acknowledgement of a resent event
	}
	st := a.pending.State
	a.ackLocked(seq, onConn)
	var then func()
	switch {
	case st == job.Complete || st == job.Error:
		conn := a.conn
		a.mu.Unlock()
		a.close(conn)
		a.end(map[job.State]string{job.Complete: "complete", job.Error: "canceled"}[st], "")
		return
	case a.canceling:
		then = a.next
	case st == job.JobSubmitted:
		a.step++
		a.running = true
		a.f.s.after(jitter(a.f.cfg.LogInterval), a.logTick)
		// Release sets released before it looks at each agent under the agent's mu: either
		// this reads it set, or Release finds this agent running once this unlocks.
		held, released, spread := a.f.held, a.f.released.Load(), time.Duration(a.f.spread.Load())
		switch {
		case !held:
			a.finishing = true
			a.f.s.after(a.f.cfg.RunFor/2+jitter(a.f.cfg.RunFor), a.finish)
		case released:
			a.finishing = true
			a.f.s.after(jitter(spread), a.finish)
		}
	default:
		a.step++
		then = a.next
	}
	a.mu.Unlock()
	if then != nil {
		a.f.s.after(jitter(a.f.cfg.Think), then)
	}
}

// ackLocked marks the pending event acknowledged; the caller holds mu.
func (a *agent) ackLocked(seq int64, onConn bool) {
	for i := range a.sent {
		if a.sent[i].Seq == seq {
			a.sent[i].Acked = true
		}
	}
	if onConn {
		a.f.stats.ack(time.Since(a.pendingAt))
	} else {
		a.f.stats.ack(-1)
	}
	a.pending = nil
}

// finish ends the container's run: the agent goes on to report its exit and uploads.
func (a *agent) finish() {
	a.mu.Lock()
	if !a.running {
		a.mu.Unlock()
		return
	}
	a.running = false
	a.mu.Unlock()
	a.next()
}

// logTick sends a batch of live log lines while the container runs.
func (a *agent) logTick() {
	a.mu.Lock()
	conn, running, done := a.conn, a.running, a.done
	a.mu.Unlock()
	if done || !running {
		return
	}
	if conn != nil {
		lines := make([]string, a.f.cfg.LogLines)
		for i := range lines {
			lines[i] = fmt.Sprintf("%s line %d of container %d", time.Now().Format(time.RFC3339Nano), i, a.container)
		}
		a.send(conn, protocol.Log{Stream: "stdout", Lines: lines})
		a.f.stats.LogBatches.Add(1)
	}
	a.f.s.after(a.f.cfg.LogInterval, a.logTick)
}

// onCancel handles the coordinator's cancel: the container stops and the agent reports error.
func (a *agent) onCancel() {
	a.mu.Lock()
	a.cancelFrame++
	if !a.cancelAt.IsZero() || a.done {
		a.mu.Unlock()
		return
	}
	a.cancelAt = time.Now()
	a.canceling, a.running = true, false
	idle := a.pending == nil
	a.mu.Unlock()
	a.f.stats.Cancels.Add(1)
	if idle {
		a.f.s.after(jitter(a.f.cfg.Think), a.next)
	}
}

// onFatal handles a refusal: the agent stops.
func (a *agent) onFatal(msg string) {
	a.rejectPending()
	a.mu.Lock()
	conn := a.conn
	a.mu.Unlock()
	a.f.stats.Fatals.Add(1)
	a.close(conn)
	a.end("refused", msg)
}

// rejectPending marks the event waiting for its acknowledgement, if any, refused.
func (a *agent) rejectPending() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pending != nil {
		for i := range a.sent {
			if a.sent[i].Seq == a.pending.Seq {
				a.sent[i].Rejected = true
			}
		}
		a.pending = nil
	}
}

// kill is the launcher's cancel reaching an agent that has not ended: its process dies.
func (a *agent) kill() {
	a.mu.Lock()
	if a.done {
		a.mu.Unlock()
		return
	}
	conn := a.conn
	a.mu.Unlock()
	a.end("killed", "")
	if conn != nil {
		_ = conn.Close()
	}
}

func (a *agent) close(conn *websocket.Conn) {
	if conn == nil {
		return
	}
	a.wmu.Lock()
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	a.wmu.Unlock()
	_ = conn.Close()
}

// end records the agent's outcome once.
func (a *agent) end(outcome, detail string) {
	a.mu.Lock()
	if a.done {
		a.mu.Unlock()
		return
	}
	a.done, a.outcome, a.fatal, a.endedAt, a.running = true, outcome, detail, time.Now(), false
	a.mu.Unlock()
	a.f.stats.ended(outcome)
}

// jitter is a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
