package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/test/ports"
)

// action is what the fake coordinator does with an event.
type action int

const (
	ack           action = iota // apply (deduplicated by seq) and acknowledge
	dropUnapplied               // close the connection without applying
	dropApplied                 // apply, then close the connection without acknowledging
	refuse                      // send Fatal and close, as for a rejected event
	hold                        // stall: apply and acknowledge nothing more on this connection
	applyHold                   // apply this event, then stall like hold (the ack is lost)
)

// helloAt is a hello the fake received, and when.
type helloAt struct {
	protocol.Hello
	at   time.Time
	conn int
}

// received is an event frame the fake received, with the connection it came on.
type received struct {
	ev   protocol.Event
	conn int
	raw  string
}

// fakeCoord is the coordinator's side of shared/protocol over a real websocket: it checks
// the token, answers the hello with an assignment whose NextSeq follows what it applied for
// the attempt, applies each event at most once per attempt+seq, and acknowledges it.
type fakeCoord struct {
	t     *testing.T
	token string
	addr  string
	up    websocket.Upgrader

	mu sync.Mutex
	// onEvent decides what happens to an event received on the n-th connection (1-based);
	// nil means ack.
	onEvent func(conn int, ev protocol.Event) action
	// helloFatal, when set, answers every hello with Fatal.
	helloFatal string
	// status, when non-zero, refuses the upgrade with this HTTP status.
	status   int
	lastSeq  map[string]int64
	applied  []protocol.Event
	received []received
	hellos   []helloAt
	logs     []protocol.Log
	progress []protocol.Progress
	live     map[int]*fakeConn
	nconn    int
	srv      *http.Server
	port     *ports.Reservation
	ln       net.Listener
	dropped  []time.Time // when the fake closed a connection on purpose
	downs    int         // how many times stop was called
	gotHello chan struct{}
}

type fakeConn struct {
	c   *websocket.Conn
	wmu sync.Mutex
}

func (fc *fakeConn) send(body any) error {
	b, err := protocol.Encode(body)
	if err != nil {
		return err
	}
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_ = fc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return fc.c.WriteMessage(websocket.TextMessage, b)
}

func newFakeCoord(t *testing.T) *fakeCoord {
	t.Helper()
	f := &fakeCoord{t: t, token: "secret-token", lastSeq: map[string]int64{}, live: map[int]*fakeConn{},
		gotHello: make(chan struct{}, 100)}
	// The port stays the fake's while it is stopped, so a restart finds it free.
	port, err := ports.Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = port.Close() })
	f.port = port
	if err := f.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.stop)
	return f
}

func (f *fakeCoord) url() string { return "http://" + f.addr }

// start listens on the fake's port and serves the agent endpoint.
func (f *fakeCoord) start() error {
	ln, err := f.port.Listen()
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(protocol.Path, f.serve)
	srv := &http.Server{Handler: mux}
	f.mu.Lock()
	f.addr, f.srv, f.ln = ln.Addr().String(), srv, ln
	f.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// stop takes the coordinator down: no listener, every connection closed.
func (f *fakeCoord) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.downs++
	var conns []*fakeConn
	for n, c := range f.live {
		conns = append(conns, c)
		delete(f.live, n)
	}
	f.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	for _, c := range conns {
		c.c.Close()
	}
}

func (f *fakeCoord) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	status, token := f.status, f.token
	f.mu.Unlock()
	if status != 0 {
		http.Error(w, "refused", status)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+token {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	c, err := f.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	fc := &fakeConn{c: c}
	_, frame, err := c.ReadMessage()
	if err != nil {
		return
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		f.t.Errorf("fake coordinator: decode hello: %v", err)
		return
	}
	h, ok := msg.(*protocol.Hello)
	if !ok {
		f.t.Errorf("fake coordinator: first message is %T, want a hello", msg)
		return
	}
	f.mu.Lock()
	f.nconn++
	n := f.nconn
	f.hellos = append(f.hellos, helloAt{Hello: *h, at: time.Now(), conn: n})
	fatal := f.helloFatal
	next := f.lastSeq[h.Attempt] + 1
	downs := f.downs
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.live, n)
		f.mu.Unlock()
	}()
	f.gotHello <- struct{}{}
	if fatal != "" {
		_ = fc.send(protocol.Fatal{Message: fatal})
		return
	}
	if err := fc.send(protocol.Assignment{JobID: h.JobID, Container: h.Container, Image: "img@sha256:abc", NextSeq: next}); err != nil {
		return
	}
	// Like the coordinator, watch for cancels only once the assignment is sent.
	f.mu.Lock()
	if f.downs != downs { // stopped meanwhile
		f.mu.Unlock()
		return
	}
	f.live[n] = fc
	f.mu.Unlock()
	stalled := false
	for {
		_, frame, err := c.ReadMessage()
		if err != nil {
			return
		}
		msg, err := protocol.Decode(frame)
		if err != nil {
			f.t.Errorf("fake coordinator: decode: %v", err)
			return
		}
		switch m := msg.(type) {
		case *protocol.Event:
			f.mu.Lock()
			f.received = append(f.received, received{ev: *m, conn: n, raw: string(frame)})
			act := ack
			if stalled {
				act = hold
			} else if f.onEvent != nil {
				act = f.onEvent(n, *m)
			}
			f.mu.Unlock()
			switch act {
			case hold:
				stalled = true
				continue
			case applyHold:
				f.apply(h.Attempt, *m)
				stalled = true
				continue
			case dropUnapplied:
				f.markDropped()
				return
			case refuse:
				_ = fc.send(protocol.Fatal{Message: fmt.Sprintf("event %d rejected", m.Seq)})
				return
			}
			f.apply(h.Attempt, *m)
			if act == dropApplied {
				f.markDropped()
				return
			}
			if err := fc.send(protocol.Ack{Seq: m.Seq}); err != nil {
				return
			}
		case *protocol.Log:
			f.mu.Lock()
			f.logs = append(f.logs, *m)
			f.mu.Unlock()
		case *protocol.Progress:
			f.mu.Lock()
			f.progress = append(f.progress, *m)
			f.mu.Unlock()
		default:
			f.t.Errorf("fake coordinator: unexpected %T", msg)
			return
		}
	}
}

func (f *fakeCoord) markDropped() {
	f.mu.Lock()
	f.dropped = append(f.dropped, time.Now())
	f.mu.Unlock()
}

// apply applies ev once per attempt+seq, in order: a gap would mean an event was lost.
func (f *fakeCoord) apply(attempt string, ev protocol.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	last := f.lastSeq[attempt]
	switch {
	case ev.Seq <= last: // a resend of an applied event: acknowledge, do not apply
	case ev.Seq == last+1:
		f.lastSeq[attempt] = ev.Seq
		f.applied = append(f.applied, ev)
	default:
		f.t.Errorf("fake coordinator: event %d after %d: a sequence number was skipped", ev.Seq, last)
	}
}

// cancel pushes a Cancel down every live connection.
func (f *fakeCoord) cancel(reason string) {
	f.mu.Lock()
	var conns []*fakeConn
	for _, c := range f.live {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	for _, c := range conns {
		_ = c.send(protocol.Cancel{Reason: reason})
	}
}

func (f *fakeCoord) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeCoord) snapshot() (applied []protocol.Event, recv []received, hellos []helloAt) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]protocol.Event(nil), f.applied...), append([]received(nil), f.received...),
		append([]helloAt(nil), f.hellos...)
}

func (f *fakeCoord) waitHellos(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		_, _, h := f.snapshot()
		if len(h) >= n {
			return
		}
		select {
		case <-f.gotHello:
		case <-deadline:
			t.Fatalf("waited for %d hellos, got %d", n, len(h))
		}
	}
}

// liveConn waits for the n-th connection to be registered (its assignment sent).
func (f *fakeCoord) liveConn(t *testing.T, n int) *fakeConn {
	t.Helper()
	var fc *fakeConn
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		fc = f.live[n]
		return fc != nil
	})
	return fc
}

var testHello = protocol.Hello{JobID: "job1", Container: 2, Attempt: "17.2", AgentVersion: "test"}

func testConfig(f *fakeCoord) Config {
	return Config{ServiceURL: f.url(), Token: f.token, Hello: testHello, AckTimeout: 3 * time.Second,
		MinBackoff: 200 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, ReconnectFor: 10 * time.Second}
}

func dial(t *testing.T, cfg Config) (*Session, *protocol.Assignment) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, a, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(s.Close)
	return s, a
}

func report(t *testing.T, s *Session, st job.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Report(ctx, protocol.Event{State: st}); err != nil {
		t.Fatalf("Report(%s): %v", st, err)
	}
}

func seqs(evs []protocol.Event) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, ev.Seq)
	}
	return out
}

func equalSeqs(a, b []int64) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestDialSendsHelloWithTokenAndReturnsAssignment(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	s, a := dial(t, testConfig(f))
	if a.JobID != "job1" || a.Container != 2 || a.Image != "img@sha256:abc" || a.NextSeq != 1 {
		t.Errorf("assignment = %+v", a)
	}
	_, _, hellos := f.snapshot()
	if len(hellos) != 1 || hellos[0].Hello != testHello {
		t.Errorf("hellos = %+v, want one %+v", hellos, testHello)
	}
	s.Close()
	s.Close() // idempotent
	if err := s.Report(tctx(t), protocol.Event{State: job.JobSubmitting}); !errors.Is(err, ErrClosed) {
		t.Errorf("Report after Close = %v, want ErrClosed", err)
	}
}

func TestDialRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(f *fakeCoord, cfg *Config)
	}{
		{"wrong token is HTTP 401", func(f *fakeCoord, cfg *Config) { cfg.Token = "wrong" }},
		{"HTTP 403", func(f *fakeCoord, cfg *Config) { f.status = http.StatusForbidden }},
		{"HTTP 404 (other protocol version)", func(f *fakeCoord, cfg *Config) { f.status = http.StatusNotFound }},
		{"Fatal instead of an assignment", func(f *fakeCoord, cfg *Config) { f.helloFatal = "No job with ID 'job1' exists" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeCoord(t)
			cfg := testConfig(f)
			f.set(func() { tc.setup(f, &cfg) })
			start := time.Now()
			_, _, err := Dial(t.Context(), cfg)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Dial = %v, want ErrRefused", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("a refusal took %s: it must not be retried", d)
			}
			if strings.Contains(err.Error(), cfg.Token) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

func TestDialRejectsBadServiceURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ftp://host", "host:80", "://x"} {
		if _, _, err := Dial(t.Context(), Config{ServiceURL: u}); err == nil {
			t.Errorf("Dial(%q) succeeded", u)
		}
	}
}

func TestDialRetriesUntilTheCoordinatorIsUp(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	f.set(func() { f.status = http.StatusServiceUnavailable })
	go func() {
		time.Sleep(500 * time.Millisecond)
		f.set(func() { f.status = 0 })
	}()
	start := time.Now()
	_, a := dial(t, testConfig(f))
	if a.NextSeq != 1 {
		t.Errorf("NextSeq = %d", a.NextSeq)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("Dial returned after %s, before the coordinator was up", d)
	}
}

func TestDialGivesUpAfterReconnectFor(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	f.set(func() { f.status = http.StatusBadGateway })
	cfg := testConfig(f)
	cfg.ReconnectFor = 300 * time.Millisecond
	_, _, err := Dial(t.Context(), cfg)
	if err == nil || errors.Is(err, ErrRefused) {
		t.Fatalf("Dial = %v, want an unreachable error", err)
	}
}

func TestReportAssignsConsecutiveSeqsFromNextSeq(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		applied int64 // events the coordinator already applied for this attempt
	}{
		{"new attempt", 0},
		{"attempt that reported 4 events before the agent restarted", 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeCoord(t)
			f.set(func() { f.lastSeq[testHello.Attempt] = tc.applied })
			s, a := dial(t, testConfig(f))
			if a.NextSeq != tc.applied+1 {
				t.Fatalf("NextSeq = %d", a.NextSeq)
			}
			for _, st := range []job.State{job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting} {
				report(t, s, st)
			}
			applied, recv, _ := f.snapshot()
			want := []int64{tc.applied + 1, tc.applied + 2, tc.applied + 3}
			if !equalSeqs(seqs(applied), want) || len(recv) != 3 {
				t.Errorf("applied seqs %v (received %d), want %v once each", seqs(applied), len(recv), want)
			}
			if applied[0].State != job.JobSubmitting || applied[2].State != job.UploadSubmitting || applied[0].Time.IsZero() {
				t.Errorf("applied = %+v", applied)
			}
		})
	}
}

func TestReportReturnsOnlyAfterTheAck(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	release := make(chan struct{})
	var holding *fakeConn
	f.set(func() {
		f.onEvent = func(n int, ev protocol.Event) action {
			holding = f.live[n]
			return hold
		}
	})
	s, _ := dial(t, testConfig(f))
	done := make(chan error, 1)
	go func() { done <- s.Report(tctx(t), protocol.Event{State: job.JobSubmitting}) }()
	go func() {
		<-release
		f.mu.Lock()
		fc := holding
		f.mu.Unlock()
		_ = fc.send(protocol.Ack{Seq: 1})
	}()
	waitFor(t, func() bool { _, r, _ := f.snapshot(); return len(r) == 1 })
	select {
	case err := <-done:
		t.Fatalf("Report returned %v before the ack", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Report = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Report did not return after the ack")
	}
}

func TestReconnectAfterADropBeforeTheAck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		act     action
		resends bool // event 3 is sent again on the new connection
	}{
		{"event not applied: resent with the same seq and content", dropUnapplied, true},
		{"event applied, ack lost: the new NextSeq covers it, not resent", dropApplied, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeCoord(t)
			f.set(func() {
				f.onEvent = func(n int, ev protocol.Event) action {
					if n == 1 && ev.Seq == 3 {
						return tc.act
					}
					return ack
				}
			})
			cfg := testConfig(f)
			s, _ := dial(t, cfg)
			report(t, s, job.JobSubmitting)
			report(t, s, job.JobSubmitted)
			ec := 0
			if err := s.Report(tctx(t), protocol.Event{State: job.UploadSubmitting, ExitCode: &ec}); err != nil {
				t.Fatalf("Report(3) = %v", err)
			}
			report(t, s, job.UploadSubmitted)

			applied, recv, hellos := f.snapshot()
			if !equalSeqs(seqs(applied), []int64{1, 2, 3, 4}) {
				t.Errorf("applied seqs = %v, want 1 2 3 4 once each", seqs(applied))
			}
			if applied[2].State != job.UploadSubmitting || applied[2].ExitCode == nil || *applied[2].ExitCode != 0 {
				t.Errorf("applied event 3 = %+v", applied[2])
			}
			if len(hellos) != 2 || hellos[1].Hello != testHello {
				t.Fatalf("hellos = %+v, want a second identical hello", hellos)
			}
			f.mu.Lock()
			dropped := f.dropped[0]
			f.mu.Unlock()
			if gap := hellos[1].at.Sub(dropped); gap < cfg.MinBackoff/2 {
				t.Errorf("reconnected %s after the drop: no backoff", gap)
			}
			var sent3 []received
			for _, r := range recv {
				if r.ev.Seq == 3 {
					sent3 = append(sent3, r)
				}
			}
			switch {
			case tc.resends && (len(sent3) != 2 || sent3[1].conn != 2 || !sameEvent(sent3[0], sent3[1])):
				t.Errorf("event 3 sent %d times (%+v), want twice with the same content, the second on connection 2", len(sent3), sent3)
			case !tc.resends && len(sent3) != 1:
				t.Errorf("event 3 sent %d times, want once: the coordinator's NextSeq said it was applied", len(sent3))
			}
		})
	}
}

// sameEvent compares the event bodies of two frames.
func sameEvent(a, b received) bool {
	ja, _ := json.Marshal(a.ev)
	jb, _ := json.Marshal(b.ev)
	return string(ja) == string(jb) && a.raw == b.raw
}

func TestSlowApplyAckedAfterTheConnectionWasReplaced(t *testing.T) {
	t.Parallel()
	// The coordinator applies event 1 on connection 1 only after the agent gave up waiting
	// (AckTimeout) and moved to connection 2, where the event is resent: it must be applied
	// once, and Report must return once either connection acknowledged it.
	f := newFakeCoord(t)
	slow := make(chan struct{})
	f.set(func() {
		f.onEvent = func(n int, ev protocol.Event) action {
			if n == 1 {
				go func() {
					<-slow
					f.apply(testHello.Attempt, ev)
				}()
				return hold
			}
			return ack
		}
	})
	cfg := testConfig(f)
	cfg.AckTimeout = 300 * time.Millisecond
	s, _ := dial(t, cfg)
	report(t, s, job.JobSubmitting)
	close(slow)
	report(t, s, job.JobSubmitted)
	applied, recv, hellos := f.snapshot()
	if !equalSeqs(seqs(applied), []int64{1, 2}) {
		t.Errorf("applied seqs = %v, want 1 2 once each", seqs(applied))
	}
	if len(hellos) < 2 || len(recv) < 3 {
		t.Errorf("hellos %d, events received %d: want a reconnect and a resend", len(hellos), len(recv))
	}
}

func TestFatalOnAnEventIsRefusedWithoutRetry(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	f.set(func() {
		f.onEvent = func(n int, ev protocol.Event) action {
			if ev.Seq == 2 {
				return refuse
			}
			return ack
		}
	})
	s, _ := dial(t, testConfig(f))
	report(t, s, job.JobSubmitting)
	if err := s.Report(tctx(t), protocol.Event{State: job.Complete}); !errors.Is(err, ErrRefused) {
		t.Fatalf("Report = %v, want ErrRefused", err)
	}
	if err := s.Report(tctx(t), protocol.Event{State: job.Error}); !errors.Is(err, ErrRefused) {
		t.Fatalf("Report after a Fatal = %v, want ErrRefused", err)
	}
	time.Sleep(3 * testConfig(f).MaxBackoff)
	_, recv, hellos := f.snapshot()
	if len(hellos) != 1 || len(recv) != 2 {
		t.Errorf("after a Fatal: %d hellos, %d events received; want no reconnect and no resend", len(hellos), len(recv))
	}
}

func TestRefusedOnReconnect(t *testing.T) {
	t.Parallel()
	// The connection breaks, and the coordinator refuses the new hello (the job ended).
	f := newFakeCoord(t)
	f.set(func() {
		f.onEvent = func(n int, ev protocol.Event) action {
			if ev.Seq == 2 {
				f.helloFatal = "Job job1 is canceling"
				return dropUnapplied
			}
			return ack
		}
	})
	s, _ := dial(t, testConfig(f))
	report(t, s, job.JobSubmitting)
	if err := s.Report(tctx(t), protocol.Event{State: job.JobSubmitted}); !errors.Is(err, ErrRefused) {
		t.Fatalf("Report = %v, want ErrRefused", err)
	}
}

func TestReportSurvivesACoordinatorOutage(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	s, _ := dial(t, testConfig(f))
	report(t, s, job.JobSubmitting)
	f.stop() // connection refused from now on
	go func() {
		time.Sleep(time.Second)
		if err := f.start(); err != nil {
			t.Errorf("restart the coordinator: %v", err)
		}
	}()
	start := time.Now()
	report(t, s, job.JobSubmitted)
	if d := time.Since(start); d < time.Second {
		t.Errorf("Report returned after %s, while the coordinator was down", d)
	}
	applied, _, hellos := f.snapshot()
	if !equalSeqs(seqs(applied), []int64{1, 2}) || len(hellos) < 2 {
		t.Errorf("applied %v with %d hellos", seqs(applied), len(hellos))
	}
}

func TestReportGivesUpAfterReconnectFor(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	cfg := testConfig(f)
	cfg.ReconnectFor = 500 * time.Millisecond
	s, _ := dial(t, cfg)
	f.stop()
	err := s.Report(tctx(t), protocol.Event{State: job.JobSubmitting})
	if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrRefused) || errors.Is(err, context.Canceled) {
		t.Fatalf("Report = %v, want an unreachable error", err)
	}
}

func TestUnreachableAfterReconnectFor(t *testing.T) {
	t.Parallel()
	// The coordinator goes away while no event is being reported (the container runs): after
	// ReconnectFor without a connection the session says so, and stops trying.
	f := newFakeCoord(t)
	cfg := testConfig(f)
	cfg.ReconnectFor = time.Second
	s, _ := dial(t, cfg)
	f.stop()
	select {
	case <-s.Unreachable():
	case <-time.After(time.Minute):
		t.Fatal("Unreachable not closed a minute after the coordinator went away (ReconnectFor 1 s)")
	}
}

func TestNotUnreachableWhenTheCoordinatorComesBack(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	s, _ := dial(t, testConfig(f)) // ReconnectFor 10 s
	f.stop()
	if err := f.start(); err != nil {
		t.Fatal(err)
	}
	f.waitHellos(t, 2)
	select {
	case <-s.Unreachable():
		t.Fatal("Unreachable closed although the coordinator came back")
	default:
	}
	report(t, s, job.JobSubmitting)
}

func TestReportReturnsTheContextError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(f *fakeCoord)
	}{
		{"waiting for the ack", func(f *fakeCoord) {
			f.set(func() { f.onEvent = func(int, protocol.Event) action { return hold } })
		}},
		{"reconnecting", func(f *fakeCoord) { f.stop() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeCoord(t)
			s, _ := dial(t, testConfig(f))
			tc.setup(f)
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(300*time.Millisecond, cancel)
			start := time.Now()
			if err := s.Report(ctx, protocol.Event{State: job.JobSubmitting}); !errors.Is(err, context.Canceled) {
				t.Fatalf("Report = %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Report took %s to notice the cancel", d)
			}
		})
	}
}

func TestAnAbandonedEventIsResentBeforeTheNextOne(t *testing.T) {
	t.Parallel()
	// A Report interrupted by its context (the runner's cancel or shutdown) leaves its event
	// pending: the next Report sends it first, so the coordinator sees no gap.
	f := newFakeCoord(t)
	f.set(func() {
		f.onEvent = func(n int, ev protocol.Event) action {
			if n == 1 && ev.Seq == 2 {
				return hold
			}
			return ack
		}
	})
	cfg := testConfig(f)
	cfg.AckTimeout = 300 * time.Millisecond
	s, _ := dial(t, cfg)
	report(t, s, job.JobSubmitting)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := s.Report(ctx, protocol.Event{State: job.JobSubmitted}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Report = %v", err)
	}
	report(t, s, job.Error)
	applied, _, _ := f.snapshot()
	if !equalSeqs(seqs(applied), []int64{1, 2, 3}) || applied[1].State != job.JobSubmitted || applied[2].State != job.Error {
		t.Errorf("applied = %v %+v", seqs(applied), applied)
	}
}

func TestCancelSurfaces(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	s, _ := dial(t, testConfig(f))
	f.liveConn(t, 1)
	f.cancel("user canceled")
	select {
	case c := <-s.Cancels():
		if c.Reason != "user canceled" {
			t.Errorf("cancel = %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no cancel")
	}
}

func TestBackgroundReconnectKeepsCancelsFlowing(t *testing.T) {
	t.Parallel()
	// The connection breaks while no event is being reported (the container runs for hours):
	// the session must reconnect by itself, or the coordinator could neither see the agent's
	// heartbeat nor deliver a cancel.
	f := newFakeCoord(t)
	s, _ := dial(t, testConfig(f))
	f.liveConn(t, 1).c.Close()
	f.waitHellos(t, 2)
	f.liveConn(t, 2)
	f.cancel("after the reconnect")
	select {
	case c := <-s.Cancels():
		if c.Reason != "after the reconnect" {
			t.Errorf("cancel = %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no cancel after the reconnect")
	}
	report(t, s, job.JobSubmitting)
}

func TestSilentConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	// A half-open connection (no frame and no ping for ReadTimeout) is replaced.
	f := newFakeCoord(t)
	cfg := testConfig(f)
	cfg.ReadTimeout = 300 * time.Millisecond
	dial(t, cfg)
	f.waitHellos(t, 2)
}

func TestPingsKeepTheConnection(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	cfg := testConfig(f)
	cfg.ReadTimeout = 400 * time.Millisecond
	dial(t, cfg)
	fc := f.liveConn(t, 1)
	pongs := make(chan struct{}, 100)
	fc.c.SetPongHandler(func(string) error { pongs <- struct{}{}; return nil })
	for range 8 {
		fc.wmu.Lock()
		err := fc.c.WriteControl(websocket.PingMessage, []byte("hb"), time.Now().Add(time.Second))
		fc.wmu.Unlock()
		if err != nil {
			t.Fatalf("ping: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, _, h := f.snapshot(); len(h) != 1 {
		t.Errorf("%d hellos: the pinged connection was replaced", len(h))
	}
}

func TestLogIsBestEffort(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	s, _ := dial(t, testConfig(f))
	s.Log("stdout", []string{"line 1", "line 2"})
	report(t, s, job.JobSubmitting)
	var logs []protocol.Log
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		logs = append([]protocol.Log(nil), f.logs...)
		return len(logs) > 0
	})
	if len(logs) != 1 || logs[0].Stream != "stdout" || len(logs[0].Lines) != 2 {
		t.Errorf("logs = %+v", logs)
	}
	f.stop()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.conn == nil })
	s.Log("stderr", []string{"dropped"}) // must neither block nor panic
}

func TestProgressIsBestEffort(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	s, _ := dial(t, testConfig(f))
	want := protocol.Progress{Phase: protocol.PhaseDownload, BytesDone: 3, BytesTotal: 9, FilesDone: 1, FilesTotal: 3}
	s.Progress(want)
	report(t, s, job.JobSubmitting)
	var got []protocol.Progress
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		got = append([]protocol.Progress(nil), f.progress...)
		return len(got) > 0
	})
	if len(got) != 1 || got[0] != want {
		t.Errorf("progress = %+v, want %+v", got, want)
	}
	f.stop()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.conn == nil })
	s.Progress(want) // must neither block nor panic
}

func TestConcurrentReports(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	f.set(func() {
		f.onEvent = func(n int, ev protocol.Event) action {
			if n == 1 && ev.Seq == 7 {
				return dropUnapplied
			}
			return ack
		}
	})
	s, _ := dial(t, testConfig(f))
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.Report(tctx(t), protocol.Event{State: job.JobSubmitting, Error: fmt.Sprint(i)})
			s.Log("stdout", []string{fmt.Sprint(i)})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Report: %v", err)
		}
	}
	applied, _, _ := f.snapshot()
	var want []int64
	for i := range n {
		want = append(want, int64(i+1))
	}
	if !equalSeqs(seqs(applied), want) {
		t.Errorf("applied seqs = %v, want 1..%d once each", seqs(applied), n)
	}
	bodies := map[string]bool{}
	for _, ev := range applied {
		bodies[ev.Error] = true
	}
	if len(bodies) != n {
		t.Errorf("%d distinct events applied, want %d", len(bodies), n)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	f := newFakeCoord(t)
	before := runtime.NumGoroutine()
	for i := range 3 {
		s, _, err := Dial(t.Context(), testConfig(f))
		if err != nil {
			t.Fatal(err)
		}
		report(t, s, job.JobSubmitting)
		f.liveConn(t, i+1).c.Close() // make the keeper work too
		s.Close()
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

// tctx is a context that bounds a call of the test to 10 s.
func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRenewedCredentialUsedOnReconnect: the coordinator's renewed session credential replaces
// the launch credential for the next connection.
func TestRenewedCredentialUsedOnReconnect(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	s, _ := dial(t, testConfig(f))
	if err := f.liveConn(t, 1).send(protocol.Credential{Token: "session-token", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.token == "session-token"
	})
	f.set(func() { f.token = "session-token" }) // the launch credential is no longer accepted
	f.liveConn(t, 1).c.Close()
	f.waitHellos(t, 2)
	f.liveConn(t, 2)
	report(t, s, job.JobSubmitting)
}

// heldConn makes the fake stall every event of connection 1 (nothing applied, nothing
// acknowledged) and returns a function that waits for that connection and acknowledges seq
// on it by hand.
func heldConn(t *testing.T, f *fakeCoord) (ackBy func(seq int64)) {
	t.Helper()
	f.set(func() {
		f.onEvent = func(n int, ev protocol.Event) action {
			if n == 1 {
				return hold
			}
			return ack
		}
	})
	return func(seq int64) {
		t.Helper()
		if err := f.liveConn(t, 1).send(protocol.Ack{Seq: seq}); err != nil {
			t.Fatalf("ack %d: %v", seq, err)
		}
	}
}

// received returns the sequence numbers the fake received on connection n, in order.
func (f *fakeCoord) receivedOn(n int) []int64 {
	_, recv, _ := f.snapshot()
	var out []int64
	for _, r := range recv {
		if r.conn == n {
			out = append(out, r.ev.Seq)
		}
	}
	return out
}

// notWithin fails the test if done yields within d: what must wait does not return early.
func notWithin[T any](t *testing.T, done <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-done:
		t.Fatalf("%s returned (%v) before it should", what, v)
	case <-time.After(d):
	}
}

// within waits up to 10 s for done.
func within[T any](t *testing.T, done <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-done:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return", what)
	}
	var zero T
	return zero
}

func TestSendReturnsBeforeTheAckAndFlushWaitsForAll(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	ackBy := heldConn(t, f)
	cfg := testConfig(f)
	cfg.AckTimeout = time.Minute // no replacement of the held connection
	s, _ := dial(t, cfg)
	// The coordinator acknowledges nothing: each Send returns all the same.
	for _, st := range []job.State{job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting} {
		if err := s.Send(tctx(t), protocol.Event{State: st}); err != nil {
			t.Fatalf("Send(%s) = %v", st, err)
		}
	}
	waitFor(t, func() bool { return len(f.receivedOn(1)) == 3 })
	if got := f.receivedOn(1); !equalSeqs(got, []int64{1, 2, 3}) {
		t.Fatalf("received %v on the connection, want 1 2 3 in order", got)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(tctx(t)) }()
	notWithin(t, flushed, 300*time.Millisecond, "Flush with three events unacknowledged")
	ackBy(1)
	ackBy(2)
	notWithin(t, flushed, 300*time.Millisecond, "Flush with event 3 unacknowledged")
	ackBy(3)
	if err := within(t, flushed, "Flush after the last ack"); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	if got := f.receivedOn(1); len(got) != 3 {
		t.Errorf("received %v: an event was sent twice on one connection", got)
	}
}

func TestReportWaitsForTheEventsSentBeforeIt(t *testing.T) {
	t.Parallel()
	// Event 1 is lost with the first connection (dropped unapplied): a Report of event 3 is a
	// barrier, returning only once 1, 2 and 3 were applied, in order.
	f := newFakeCoord(t)
	f.set(func() {
		f.onEvent = func(n int, ev protocol.Event) action {
			if n == 1 && ev.Seq == 1 {
				return dropUnapplied
			}
			return ack
		}
	})
	s, _ := dial(t, testConfig(f))
	for _, st := range []job.State{job.JobSubmitting, job.JobSubmitted} {
		if err := s.Send(tctx(t), protocol.Event{State: st}); err != nil {
			t.Fatalf("Send(%s) = %v", st, err)
		}
	}
	ec := 0
	if err := s.Report(tctx(t), protocol.Event{State: job.UploadSubmitting, ExitCode: &ec}); err != nil {
		t.Fatalf("Report = %v", err)
	}
	applied, _, hellos := f.snapshot()
	if !equalSeqs(seqs(applied), []int64{1, 2, 3}) || applied[0].State != job.JobSubmitting || applied[2].State != job.UploadSubmitting {
		t.Errorf("applied when Report returned: %v %+v, want 1 2 3", seqs(applied), applied)
	}
	if len(hellos) != 2 {
		t.Errorf("%d hellos, want a reconnect", len(hellos))
	}
}

func TestPipelinedEventsResentAfterADropWithoutAWaiter(t *testing.T) {
	t.Parallel()
	// Nobody waits (the container runs): the keeper reconnects and resends what is pending,
	// from the first unapplied event, in order.
	cases := []struct {
		name    string
		act     action
		resends bool // event 2 is sent again on the new connection
	}{
		{"event not applied: resent with what follows", dropUnapplied, true},
		{"event applied, ack lost: NextSeq covers it, what follows is resent", dropApplied, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeCoord(t)
			f.set(func() {
				f.onEvent = func(n int, ev protocol.Event) action {
					if n == 1 && ev.Seq == 2 {
						return tc.act
					}
					return ack
				}
			})
			s, _ := dial(t, testConfig(f))
			for _, st := range []job.State{job.JobSubmitting, job.JobSubmitted, job.UploadSubmitting, job.UploadSubmitted} {
				ev := protocol.Event{State: st}
				if st == job.UploadSubmitting {
					ev.ExitCode = new(int)
				}
				if err := s.Send(tctx(t), ev); err != nil {
					t.Fatalf("Send(%s) = %v", st, err)
				}
			}
			waitFor(t, func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return len(s.pending) == 0
			})
			applied, _, hellos := f.snapshot()
			if !equalSeqs(seqs(applied), []int64{1, 2, 3, 4}) {
				t.Errorf("applied %v, want 1 2 3 4 once each", seqs(applied))
			}
			if len(hellos) != 2 {
				t.Errorf("%d hellos, want one reconnect", len(hellos))
			}
			on2 := f.receivedOn(2)
			want := []int64{3, 4}
			if tc.resends {
				want = []int64{2, 3, 4}
			}
			if !equalSeqs(on2, want) {
				t.Errorf("sent on the new connection: %v, want %v", on2, want)
			}
		})
	}
}

func TestRefusalOfAPipelinedEvent(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	f.set(func() {
		f.onEvent = func(n int, ev protocol.Event) action {
			if ev.Seq == 2 {
				return refuse
			}
			return ack
		}
	})
	s, _ := dial(t, testConfig(f))
	select {
	case <-s.Refused():
		t.Fatal("Refused closed before any refusal")
	default:
	}
	for _, st := range []job.State{job.JobSubmitting, job.JobSubmitted} {
		if err := s.Send(tctx(t), protocol.Event{State: st}); err != nil {
			t.Fatalf("Send(%s) = %v: the refusal is not known yet", st, err)
		}
	}
	select {
	case <-s.Refused():
	case <-time.After(10 * time.Second):
		t.Fatal("Refused not closed after the coordinator refused event 2")
	}
	if err := s.Send(tctx(t), protocol.Event{State: job.Error}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "event 2 rejected") {
		t.Errorf("Send after the refusal = %v, want ErrRefused with the coordinator's message", err)
	}
	if err := s.Report(tctx(t), protocol.Event{State: job.Error}); !errors.Is(err, ErrRefused) {
		t.Errorf("Report after the refusal = %v, want ErrRefused", err)
	}
	if err := s.Flush(tctx(t)); !errors.Is(err, ErrRefused) {
		t.Errorf("Flush after the refusal = %v, want ErrRefused", err)
	}
	time.Sleep(3 * testConfig(f).MaxBackoff)
	applied, recv, hellos := f.snapshot()
	if len(hellos) != 1 || len(recv) != 2 || !equalSeqs(seqs(applied), []int64{1}) {
		t.Errorf("after the refusal: %d hellos, %d events received, applied %v; want no reconnect and no resend", len(hellos), len(recv), seqs(applied))
	}
}

func TestSendIsBounded(t *testing.T) {
	t.Parallel()
	f := newFakeCoord(t)
	ackBy := heldConn(t, f)
	cfg := testConfig(f)
	cfg.AckTimeout = time.Minute
	cfg.MaxPending = 2
	s, _ := dial(t, cfg)
	for range 2 {
		if err := s.Send(tctx(t), protocol.Event{State: job.JobSubmitting}); err != nil {
			t.Fatal(err)
		}
	}
	sent := make(chan error, 1)
	go func() { sent <- s.Send(tctx(t), protocol.Event{State: job.JobSubmitted}) }()
	notWithin(t, sent, 300*time.Millisecond, "Send with MaxPending events unacknowledged")
	ackBy(1)
	if err := within(t, sent, "Send after the oldest event's ack"); err != nil {
		t.Fatalf("Send = %v", err)
	}
	waitFor(t, func() bool { return len(f.receivedOn(1)) == 3 })
	// A Send that cannot get room gives up with its context, and takes no sequence number.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := s.Send(ctx, protocol.Event{State: job.Error}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send without room = %v, want the context's error", err)
	}
	ackBy(2)
	ackBy(3)
	if err := s.Send(tctx(t), protocol.Event{State: job.Error}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(f.receivedOn(1)) == 4 })
	ackBy(4)
	if err := s.Flush(tctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := f.receivedOn(1); !equalSeqs(got, []int64{1, 2, 3, 4}) {
		t.Errorf("received %v, want 1 2 3 4: the abandoned Send must not take a number", got)
	}
}

func TestUnacknowledgedPipelinedEventReplacesTheConnection(t *testing.T) {
	t.Parallel()
	// The coordinator never acknowledges on the first connection and nobody waits: after
	// AckTimeout the session replaces the connection and resends, as a waiting Report would.
	f := newFakeCoord(t)
	heldConn(t, f)
	cfg := testConfig(f)
	cfg.AckTimeout = 300 * time.Millisecond
	s, _ := dial(t, cfg)
	if err := s.Send(tctx(t), protocol.Event{State: job.JobSubmitting}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.pending) == 0
	})
	applied, _, hellos := f.snapshot()
	if !equalSeqs(seqs(applied), []int64{1}) || len(hellos) != 2 {
		t.Errorf("applied %v with %d hellos, want 1 after a reconnect", seqs(applied), len(hellos))
	}
}

func TestPipelinedEventsSurviveAnAgentRestart(t *testing.T) {
	t.Parallel()
	// Two events sent, never acknowledged, and the agent process goes (Close): the next
	// process of the attempt finds them in the journal and delivers them, in order.
	f := newFakeCoord(t)
	heldConn(t, f)
	cfg := testConfig(f)
	cfg.AckTimeout = time.Minute
	cfg.JournalPath = filepath.Join(t.TempDir(), "events.journal")
	s, _ := dial(t, cfg)
	for _, st := range []job.State{job.JobSubmitting, job.JobSubmitted} {
		if err := s.Send(tctx(t), protocol.Event{State: st}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s2, _ := dial(t, cfg)
	if rec := s2.Recovered(); len(rec) != 2 || rec[0].Seq != 1 || rec[1].State != job.JobSubmitted {
		t.Fatalf("recovered %+v, want events 1 and 2", rec)
	}
	if err := s2.Flush(tctx(t)); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	applied, _, _ := f.snapshot()
	if !equalSeqs(seqs(applied), []int64{1, 2}) || applied[1].State != job.JobSubmitted {
		t.Errorf("applied %v, want 1 2", seqs(applied))
	}
	if b, _ := os.ReadFile(cfg.JournalPath); len(b) != 0 {
		t.Errorf("journal after the acknowledgements: %q, want it empty", b)
	}
}

func TestPipelinedEventWhileTheCoordinatorIsGone(t *testing.T) {
	t.Parallel()
	// The coordinator goes away for good: Send still returns (the event is journaled), and
	// after ReconnectFor the session says it is unreachable, as when nothing was sent.
	f := newFakeCoord(t)
	cfg := testConfig(f)
	cfg.ReconnectFor = time.Second
	cfg.JournalPath = filepath.Join(t.TempDir(), "events.journal")
	s, _ := dial(t, cfg)
	f.stop()
	if err := s.Send(tctx(t), protocol.Event{State: job.JobSubmitting}); err != nil {
		t.Fatalf("Send = %v", err)
	}
	select {
	case <-s.Unreachable():
	case <-time.After(time.Minute):
		t.Fatal("Unreachable not closed a minute after the coordinator went away (ReconnectFor 1 s)")
	}
	if b, _ := os.ReadFile(cfg.JournalPath); !strings.Contains(string(b), `"state":"job_submitting"`) {
		t.Errorf("journal %q lacks the undelivered event", b)
	}
}
