package agentws_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kbase/cts/coordinator/devstack/auth2"
	"github.com/kbase/cts/coordinator/internal/agentcred"
	"github.com/kbase/cts/coordinator/internal/agentws"
	"github.com/kbase/cts/coordinator/internal/api"
	"github.com/kbase/cts/coordinator/internal/auth"
	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/ingest"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

// fakeService is the jobs service as the endpoint sees it.
type fakeService struct {
	mu       sync.Mutex
	hellos   []protocol.Hello
	launches []int
	events   []protocol.Event
	agents   []ingest.Agent
	touches  int
	batches  [][]jobs.Touch
	// presence is every PutPresence call's list, in order.
	presence  [][]jobs.Touch
	watching  map[string]int
	cancels   map[string]chan protocol.Cancel
	assignErr error
	// assignWait, when set, is called (outside the lock) before an assignment is built: a
	// slow store.
	assignWait func()
	// applyErr, when set, is returned for the event with that seq.
	applyErr map[int64]error
	// applyWait, when set, is called (outside the lock) before an event is applied: a slow
	// store.
	applyWait func(ev protocol.Event)
	// applying counts the applies in progress, maxApplying their peak.
	applying, maxApplying int
}

func newFakeService() *fakeService {
	return &fakeService{watching: map[string]int{}, cancels: map[string]chan protocol.Cancel{}, applyErr: map[int64]error{}}
}

func (f *fakeService) Assignment(ctx context.Context, h protocol.Hello, launch int) (*protocol.Assignment, error) {
	f.mu.Lock()
	wait := f.assignWait
	f.mu.Unlock()
	if wait != nil {
		wait()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hellos = append(f.hellos, h)
	f.launches = append(f.launches, launch)
	if f.assignErr != nil {
		return nil, f.assignErr
	}
	return &protocol.Assignment{JobID: h.JobID, Container: h.Container, Image: "img@sha256:x", Command: []string{"/run"}, NextSeq: 1}, nil
}

func (f *fakeService) ApplyEvent(ctx context.Context, a ingest.Agent, ev protocol.Event) error {
	f.mu.Lock()
	f.applying++
	f.maxApplying = max(f.maxApplying, f.applying)
	wait := f.applyWait
	f.mu.Unlock()
	if wait != nil {
		wait(ev)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applying--
	if err := f.applyErr[ev.Seq]; err != nil {
		return err
	}
	f.events = append(f.events, ev)
	f.agents = append(f.agents, a)
	return nil
}

func (f *fakeService) Touch(ctx context.Context, ts []jobs.Touch) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touches += len(ts)
	f.batches = append(f.batches, ts)
	return len(ts), nil
}

func (f *fakeService) PutPresence(ctx context.Context, replica string, at time.Time, agents []jobs.Touch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.presence = append(f.presence, agents)
	return nil
}

// lastPresence returns the latest presence record (nil when none).
func (f *fakeService) lastPresence() []jobs.Touch {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.presence) == 0 {
		return nil
	}
	return f.presence[len(f.presence)-1]
}

func (f *fakeService) WatchCancel(jobID string) (<-chan protocol.Cancel, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan protocol.Cancel, 1)
	f.cancels[jobID] = ch
	f.watching[jobID]++
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.watching[jobID]--
	}
}

func (f *fakeService) cancel(jobID string) {
	f.mu.Lock()
	ch := f.cancels[jobID]
	f.mu.Unlock()
	ch <- protocol.Cancel{Reason: "the job was canceled"}
}

func (f *fakeService) watchers(jobID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watching[jobID]
}

// fixture is the endpoint behind the real API authorizer and a fake auth2.
type fixture struct {
	svc  *fakeService
	h    *agentws.Handler
	url  string
	keys *agentcred.Keyring
}

// testKey is the fixture's agent credential key.
var testKey = []byte(strings.Repeat("k", agentcred.MinKeyBytes))

// credential returns a launch credential of launch 0 for container n of job.
func (f *fixture) credential(job string, n int) string {
	return f.keys.Mint(agentcred.Claims{Kind: agentcred.KindLaunch, JobID: job, Container: n, Expires: time.Now().Add(time.Hour).Unix()})
}

func newFixture(t *testing.T, cfg agentws.Config) *fixture {
	t.Helper()
	a2 := auth2.New(
		auth2.User{Name: "agent", Token: "tok-agent", CustomRoles: []string{auth.DefaultExecutorRole}},
		auth2.User{Name: "plain", Token: "tok-plain"},
	)
	if err := a2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a2.Close() })
	ac, err := auth.New(t.Context(), auth.Config{URL: a2.URL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	keys, err := agentcred.New(testKey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{svc: newFakeService(), keys: keys}
	if cfg.Credentials == nil {
		cfg.Credentials = keys
	}
	if cfg.Presence == nil {
		cfg.Presence = f.svc
	}
	var apiSrv *api.Server
	f.h = agentws.New(cfg, f.svc, f.svc, func(r *http.Request) error { return apiSrv.AuthorizeExecutor(r) }, log,
		func(w http.ResponseWriter, r *http.Request, err error) { apiSrv.WriteError(w, r, err) })
	apiSrv = api.New(api.Config{Credentials: keys}, ac, api.Jobs{}, nil, nil, f.h, log)
	srv := httptest.NewServer(apiSrv)
	t.Cleanup(func() {
		srv.Close()
		f.h.Wait()
	})
	f.url = "ws" + strings.TrimPrefix(srv.URL, "http") + protocol.Path
	return f
}

// dial connects with the launch credential of hello's container and returns the connection.
func (f *fixture) dial(t *testing.T) *websocket.Conn {
	t.Helper()
	return f.dialWith(t, f.credential(hello.JobID, hello.Container))
}

// dialWith connects with token (a credential or a KBase token).
func (f *fixture) dialWith(t *testing.T, token string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.DialContext(t.Context(), f.url, http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// assigned reads the assignment and the session credential that follows it.
func assigned(t *testing.T, c *websocket.Conn) (*protocol.Assignment, *protocol.Credential) {
	t.Helper()
	a := mustRecv[protocol.Assignment](t, c)
	return a, mustRecv[protocol.Credential](t, c)
}

func send(t *testing.T, c *websocket.Conn, body any) {
	t.Helper()
	b, err := protocol.Encode(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
}

// recv reads the next message, or returns the read error.
func recv(t *testing.T, c *websocket.Conn) (any, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, frame, err := c.ReadMessage()
	if err != nil {
		return nil, err
	}
	m, err := protocol.Decode(frame)
	if err != nil {
		t.Fatalf("decode %s: %v", frame, err)
	}
	return m, nil
}

func mustRecv[T any](t *testing.T, c *websocket.Conn) *T {
	t.Helper()
	m, err := recv(t, c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	v, ok := m.(*T)
	if !ok {
		t.Fatalf("got %T %+v, want %T", m, m, v)
	}
	return v
}

// wantFatalThenClose expects a Fatal with msg (any if "") and then the close frame.
func wantFatalThenClose(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	f := mustRecv[protocol.Fatal](t, c)
	if msg != "" && f.Message != msg {
		t.Fatalf("fatal %q, want %q", f.Message, msg)
	}
	_, err := recv(t, c)
	if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("after the fatal: %v, want a policy-violation close", err)
	}
}

var hello = protocol.Hello{JobID: "job1", Container: 1, Attempt: "12.1", AgentVersion: "test"}

func TestRefusedBeforeUpgrade(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	for _, tc := range []struct {
		name, header string
		status       int
		code         ctserr.Code
		msg          string
	}{
		{"no header", "", 401, ctserr.CodeNoToken, "Authorization header required"},
		{"other scheme", "Basic abc", 401, ctserr.CodeInvalidAuthHeader, "Authorization header requires Bearer scheme"},
		{"no token", "Bearer ", 401, ctserr.CodeInvalidAuthHeader, "Authorization header requires Bearer scheme followed by token"},
		{"invalid token", "Bearer nope", 401, ctserr.CodeInvalidToken, ""},
		{"not an executor", "Bearer tok-plain", 403, ctserr.CodeUnauthorized, "User plain does not have the executor role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.header != "" {
				h.Set("Authorization", tc.header)
			}
			c, resp, err := websocket.DefaultDialer.DialContext(t.Context(), f.url, h)
			if err == nil {
				c.Close()
				t.Fatal("the upgrade succeeded")
			}
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("dial = %v, response %v; want status %d", err, resp, tc.status)
			}
			var body struct {
				Error struct {
					AppCode ctserr.Code `json:"appcode"`
					Message string      `json:"message"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body.Error.AppCode != tc.code || (tc.msg != "" && body.Error.Message != tc.msg) {
				t.Fatalf("error %+v, want %d %q", body.Error, tc.code, tc.msg)
			}
		})
	}
	f.svc.mu.Lock()
	n := len(f.svc.hellos)
	f.svc.mu.Unlock()
	if n != 0 {
		t.Fatal("a refused agent reached the service")
	}
}

func TestSession(t *testing.T) {
	f := newFixture(t, agentws.Config{HeartbeatInterval: 20 * time.Millisecond})
	c := f.dial(t)
	send(t, c, hello)
	a, _ := assigned(t, c)
	if a.JobID != "job1" || a.Container != 1 || a.NextSeq != 1 {
		t.Fatalf("assignment %+v", a)
	}
	f.svc.mu.Lock()
	hellos := append([]protocol.Hello(nil), f.svc.hellos...)
	f.svc.mu.Unlock()
	if len(hellos) != 1 || hellos[0] != hello {
		t.Fatalf("hellos %+v", hellos)
	}
	// The connection counts as a heartbeat (the replica's presence record lists the agent),
	// and the agent counts as connected.
	waitFor(t, func() bool { return len(f.svc.lastPresence()) == 1 }, "the connected agent is not recorded")
	if !f.h.AgentConnected("job1", 1, "12.1") || !f.h.AgentConnected("job1", 1, "") || f.h.AgentConnected("job1", 1, "other") || f.h.AgentConnected("job1", 0, "") {
		t.Fatal("AgentConnected does not name exactly the connected agent")
	}

	code := 0
	for seq := int64(1); seq <= 3; seq++ {
		send(t, c, protocol.Event{Seq: seq, State: job.JobSubmitting, ExitCode: &code})
		// Log lines are not acknowledged and do not reach the service.
		send(t, c, protocol.Log{Stream: "stdout", Lines: []string{"hello"}})
		if ack := mustRecv[protocol.Ack](t, c); ack.Seq != seq {
			t.Fatalf("ack %d, want %d", ack.Seq, seq)
		}
	}
	f.svc.mu.Lock()
	events := append([]protocol.Event(nil), f.svc.events...)
	f.svc.mu.Unlock()
	if len(events) != 3 || events[2].Seq != 3 {
		t.Fatalf("events %+v", events)
	}

	// A cancel travels down the socket.
	f.svc.cancel("job1")
	if cn := mustRecv[protocol.Cancel](t, c); cn.Reason != "the job was canceled" {
		t.Fatalf("cancel %+v", cn)
	}
	// The session still works afterwards: the agent reports its end.
	send(t, c, protocol.Event{Seq: 4, State: job.Error, AdminError: "canceled"})
	if ack := mustRecv[protocol.Ack](t, c); ack.Seq != 4 {
		t.Fatalf("ack %d", ack.Seq)
	}
	if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return f.svc.watchers("job1") == 0 }, "the session did not unregister its cancel watch")
	waitFor(t, func() bool { return !f.h.AgentConnected("job1", 1, "12.1") }, "the agent still counts as connected after its session ended")
}

func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEventFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		fatal string // "" means: closed without a fatal
	}{
		{"rejected", fmt.Errorf("%w: container 1 of job job1 is complete, cannot move to error", ingest.ErrRejected),
			"event rejected: container 1 of job job1 is complete, cannot move to error"},
		{"refused with a CTS error", ctserr.New(ctserr.CodeNoSuchSubJob, "no such container"), "no such container"},
		// A store outage: no ack (the agent resends after reconnecting) and no fatal (it may).
		{"outage", errors.New("mongo: connection refused"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, agentws.Config{})
			f.svc.mu.Lock()
			f.svc.applyErr[2] = tc.err
			f.svc.mu.Unlock()
			c := f.dial(t)
			send(t, c, hello)
			assigned(t, c)
			send(t, c, protocol.Event{Seq: 1, State: job.JobSubmitting})
			mustRecv[protocol.Ack](t, c)
			send(t, c, protocol.Event{Seq: 2, State: job.JobSubmitted})
			if tc.fatal != "" {
				wantFatalThenClose(t, c, tc.fatal)
				return
			}
			m, err := recv(t, c)
			if err == nil {
				t.Fatalf("got %T %+v after an outage, want the connection closed", m, m)
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection stayed open: %v", err)
			}
		})
	}
}

// TestPipelinedEvents: an agent sends its progress states without waiting for their
// acknowledgements. The session applies them one at a time in the order they came and
// acknowledges each in that order; an event it refuses ends the session, and the events
// queued behind it are not applied (the agent is refused; a store outage makes it resend
// from the first unacknowledged one).
func TestPipelinedEvents(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error // for event 2
		applied []int64
		fatal   string
	}{
		{"all applied", nil, []int64{1, 2, 3, 4}, ""},
		{"the second rejected", fmt.Errorf("%w: the job is canceling", ingest.ErrRejected), []int64{1}, "event rejected: the job is canceling"},
		{"a store outage on the second", errors.New("mongo: connection refused"), []int64{1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, agentws.Config{})
			release := make(chan struct{})
			f.svc.mu.Lock()
			f.svc.applyErr[2] = tc.err
			f.svc.applyWait = func(ev protocol.Event) {
				if ev.Seq == 1 {
					<-release // every event is in the socket before the first is applied
				}
			}
			f.svc.mu.Unlock()
			c := f.dial(t)
			send(t, c, hello)
			assigned(t, c)
			code := 0
			for seq, st := range []job.State{job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted} {
				send(t, c, protocol.Event{Seq: int64(seq + 1), State: st, ExitCode: &code})
			}
			close(release)
			var acks []int64
			for range tc.applied {
				acks = append(acks, mustRecv[protocol.Ack](t, c).Seq)
			}
			if fmt.Sprint(acks) != fmt.Sprint(tc.applied) {
				t.Errorf("acks %v, want %v in order", acks, tc.applied)
			}
			switch {
			case tc.fatal != "":
				wantFatalThenClose(t, c, tc.fatal)
			case tc.err != nil:
				if m, err := recv(t, c); err == nil {
					t.Fatalf("got %T %+v after an outage, want the connection closed", m, m)
				}
			}
			f.svc.mu.Lock()
			var applied []int64
			for _, ev := range f.svc.events {
				applied = append(applied, ev.Seq)
			}
			most := f.svc.maxApplying
			f.svc.mu.Unlock()
			if fmt.Sprint(applied) != fmt.Sprint(tc.applied) {
				t.Errorf("applied %v, want %v", applied, tc.applied)
			}
			if most != 1 {
				t.Errorf("%d events applied at once, want one at a time", most)
			}
		})
	}
}

func TestBadFirstFrames(t *testing.T) {
	f := newFixture(t, agentws.Config{})
	for _, tc := range []struct {
		name  string
		frame func() []byte
		fatal string
	}{
		{"event first", func() []byte { b, _ := protocol.Encode(protocol.Event{Seq: 1, State: job.JobSubmitting}); return b },
			"the first message must be a hello with job_id and attempt"},
		{"hello without attempt", func() []byte { b, _ := protocol.Encode(protocol.Hello{JobID: "j"}); return b },
			"the first message must be a hello with job_id and attempt"},
		{"hello without job", func() []byte { b, _ := protocol.Encode(protocol.Hello{Attempt: "a"}); return b },
			"the first message must be a hello with job_id and attempt"},
		{"not json", func() []byte { return []byte("hello?") }, ""},
		{"other protocol version", func() []byte { return []byte(`{"v":2,"type":"hello","body":{}}`) }, "protocol: version 2, want 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.dial(t)
			if err := c.WriteMessage(websocket.TextMessage, tc.frame()); err != nil {
				t.Fatal(err)
			}
			wantFatalThenClose(t, c, tc.fatal)
		})
	}
	t.Run("unexpected message after the hello", func(t *testing.T) {
		c := f.dial(t)
		send(t, c, hello)
		assigned(t, c)
		send(t, c, protocol.Ack{Seq: 1})
		wantFatalThenClose(t, c, "unexpected message from agent")
	})
	f.svc.mu.Lock()
	n := len(f.svc.events)
	f.svc.mu.Unlock()
	if n != 0 {
		t.Fatal("events reached the service")
	}
}

func TestAssignmentRefused(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		f := newFixture(t, agentws.Config{})
		f.svc.mu.Lock()
		f.svc.assignErr = ctserr.New(ctserr.CodeInvalidJobState, "Job job1 is canceling")
		f.svc.mu.Unlock()
		c := f.dial(t)
		send(t, c, hello)
		wantFatalThenClose(t, c, "Job job1 is canceling")
	})
	t.Run("outage", func(t *testing.T) {
		f := newFixture(t, agentws.Config{})
		f.svc.mu.Lock()
		f.svc.assignErr = errors.New("mongo down")
		f.svc.mu.Unlock()
		c := f.dial(t)
		send(t, c, hello)
		// No fatal: the agent must retry later.
		m, err := recv(t, c)
		if err == nil {
			t.Fatalf("got %T %+v, want the connection closed", m, m)
		}
	})
}

func TestHeartbeat(t *testing.T) {
	t.Run("pings keep a reading agent connected", func(t *testing.T) {
		f := newFixture(t, agentws.Config{PingInterval: 20 * time.Millisecond, ReadTimeout: 150 * time.Millisecond})
		c := f.dial(t)
		pings := make(chan struct{}, 100)
		c.SetPingHandler(func(data string) error {
			pings <- struct{}{}
			return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		send(t, c, hello)
		assigned(t, c)
		// Read (and so answer pings) for several read timeouts: the session must survive.
		go func() { _, _, _ = c.ReadMessage() }()
		time.Sleep(500 * time.Millisecond)
		if len(pings) < 5 {
			t.Fatalf("%d pings in 500 ms at a 20 ms interval", len(pings))
		}
		if f.svc.watchers("job1") != 1 {
			t.Fatal("the session ended although the agent answered every ping")
		}
	})
	t.Run("a silent agent is dropped", func(t *testing.T) {
		f := newFixture(t, agentws.Config{PingInterval: 20 * time.Millisecond, ReadTimeout: 150 * time.Millisecond})
		c := f.dial(t)
		send(t, c, hello)
		assigned(t, c)
		// Not reading: no pong goes back.
		waitFor(t, func() bool { return f.svc.watchers("job1") == 0 }, "a silent agent kept its session")
	})
	t.Run("no hello", func(t *testing.T) {
		f := newFixture(t, agentws.Config{HelloTimeout: 100 * time.Millisecond})
		c := f.dial(t)
		start := time.Now()
		_, err := recv(t, c)
		if err == nil || time.Since(start) > 3*time.Second {
			t.Fatalf("read = %v after %s, want the connection closed after the hello timeout", err, time.Since(start))
		}
	})
}

// Wait is the shutdown: it must end sessions whose agents are alive (they answer pings, so
// they would never time out) and refuse new ones.
func TestWaitEndsLiveSessions(t *testing.T) {
	f := newFixture(t, agentws.Config{PingInterval: 20 * time.Millisecond, ReadTimeout: 150 * time.Millisecond})
	c := f.dial(t)
	send(t, c, hello)
	assigned(t, c)
	closed := make(chan error, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := c.ReadMessage() // answers pings until the close
		closed <- err
	}()
	time.Sleep(100 * time.Millisecond) // a few ping rounds
	waited := make(chan struct{})
	go func() { f.h.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not end a live session")
	}
	if err := <-closed; !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("the agent saw %v, want a going-away close", err)
	}
	_, resp, err := websocket.DefaultDialer.DialContext(t.Context(), f.url, http.Header{"Authorization": {"Bearer " + f.credential("job1", 1)}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Wait = %v, %v; want 503", err, resp)
	}
}
