// Package session is the agent's end of the agent websocket (shared/protocol): it dials the
// coordinator with the agent's token, says hello, receives the assignment, and delivers state
// events exactly once and in order: each event gets the next sequence number, is journaled,
// stays pending until the coordinator acknowledges it, and is resent after a reconnect (backoff
// with jitter).
//
// Delivery is pipelined: Send hands an event over and returns at once (the events go out in
// sequence order on the live connection, or on the next one); Report and Flush are the
// barriers, returning once the coordinator acknowledged the event and every event before it.
// The caller waits only where it must (the agent: for its final event). A refusal of any
// event (a Fatal) closes Refused, and every later Send, Report and Flush fails with it.
//
// A keeper reconnects a broken connection in the background and resends what is pending, so
// cancels, heartbeats and pipelined events keep flowing while nobody waits; an event left
// unacknowledged on a live connection for AckTimeout replaces the connection. Cancel messages
// are surfaced on a channel. It knows nothing about what the events mean.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kbase/cts/shared/protocol"
)

// ErrRefused means the coordinator refused this agent (Fatal, or an HTTP 4xx on the upgrade
// such as 401/403): do not retry.
var ErrRefused = errors.New("refused by the coordinator")

// ErrUnreachable means the coordinator did not answer for ReconnectFor: Dial, Report and
// Flush give up with an error wrapping it, and Unreachable is closed.
var ErrUnreachable = errors.New("coordinator unreachable")

// ErrClosed is returned by Report after Close.
var ErrClosed = errors.New("session closed")

// Config says where and who.
type Config struct {
	// ServiceURL is the coordinator's root URL (http or https).
	ServiceURL string
	Token      string
	Hello      protocol.Hello
	// ReconnectFor bounds how long Dial and Report keep trying to reach the coordinator (and
	// how long Report waits for an acknowledgement) before giving up, and how long the
	// connection may stay down between reports before Unreachable is closed (default 6 h, the
	// CTS JOB_UPDATE_TIMEOUT_MIN).
	ReconnectFor time.Duration
	// AckTimeout is how long an event may stay unacknowledged on a live connection before the
	// connection is considered dead (default 60 s).
	AckTimeout time.Duration
	// ReadTimeout is how long the connection may stay silent (no frame, no ping) before it is
	// considered dead and replaced (default 2 min; the coordinator pings every 15 s).
	ReadTimeout time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential wait between reconnects
	// (defaults 500 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
	// JournalPath, when set, is the file that keeps unacknowledged events across agent
	// process restarts (see journal). Events found there at Dial are resent first.
	JournalPath string
	// LogQueue is how many Log batches (and Progress reports) may wait for the connection
	// (default 64); more are dropped, so live logs never hold up state events.
	LogQueue int
	// MaxPending bounds the events sent and not yet acknowledged (default 64): Send waits for
	// the oldest one's acknowledgement while that many are pending.
	MaxPending int
	Log        *slog.Logger
}

// Session is a live agent session. Report is safe for concurrent use.
type Session struct {
	cfg     Config
	log     *slog.Logger
	cancels chan protocol.Cancel

	// connecting admits one connect at a time (Reports and the keeper): a second connection
	// would replace the first without closing it.
	connecting chan struct{}
	// lost is signalled by the reader of the current connection when it breaks.
	lost       chan struct{}
	stopKeeper context.CancelFunc
	// wg joins the keeper and the connection readers (Close waits for them).
	wg sync.WaitGroup

	mu          sync.Mutex
	conn        *websocket.Conn
	connDone    chan struct{} // closed when conn's reader ends
	connGen     int
	connectedAt time.Time
	brokeAt     time.Time // when the last connection broke or was dropped
	nextSeq     int64
	pending     map[int64]protocol.Event
	// acked holds a channel for every pending event, closed when it is acknowledged (or
	// covered by a reconnect's NextSeq), or by a refusal.
	acked map[int64]chan struct{}
	// timers replace the connection when an event written on it stays unacknowledged for
	// AckTimeout.
	timers map[int64]*time.Timer
	// sentConn and sentThrough say which pending events were written on which connection:
	// those up to sentThrough on sentConn (see sendPending).
	sentConn    *websocket.Conn
	sentThrough int64
	fatal       error
	refused     chan struct{} // closed when fatal is set
	closed      bool
	journal     *journal
	// token is presented on each (re)connect: Config.Token, then the newest session
	// credential the coordinator gave.
	token     string
	recovered []protocol.Event

	// unreachable is closed (once) when the coordinator stayed unreachable for
	// ReconnectFor while no report was waiting.
	unreachable     chan struct{}
	unreachableOnce sync.Once

	logs        chan any // protocol.Log and protocol.Progress: best effort, never acknowledged
	logsDropped int64    // batches dropped because the queue was full (under mu)
	stopLogs    chan struct{}

	wmu sync.Mutex // serialises writes to conn
	// smu serialises the writing of events (sendPending), so that they go out in sequence
	// order; it is taken before mu and wmu.
	smu sync.Mutex
}

// Dial connects (retrying with backoff for up to ReconnectFor while the coordinator is
// unreachable) and returns the session and the agent's assignment. ctx bounds the dial only;
// the session lives until Close.
func Dial(ctx context.Context, cfg Config) (*Session, *protocol.Assignment, error) {
	if _, err := wsURL(cfg.ServiceURL); err != nil {
		return nil, nil, err
	}
	if cfg.ReconnectFor <= 0 {
		cfg.ReconnectFor = 6 * time.Hour
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 60 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 2 * time.Minute
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, 30*time.Second)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.LogQueue <= 0 {
		cfg.LogQueue = 64
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 64
	}
	s := &Session{cfg: cfg, log: cfg.Log, token: cfg.Token, cancels: make(chan protocol.Cancel, 1),
		connecting: make(chan struct{}, 1), lost: make(chan struct{}, 1), nextSeq: 1, unreachable: make(chan struct{}),
		pending: map[int64]protocol.Event{}, acked: map[int64]chan struct{}{}, timers: map[int64]*time.Timer{},
		refused: make(chan struct{}), logs: make(chan any, cfg.LogQueue), stopLogs: make(chan struct{})}
	if cfg.JournalPath != "" {
		j, evs, err := openJournal(cfg.JournalPath)
		if err != nil {
			return nil, nil, err
		}
		s.journal, s.recovered = j, evs
		for _, ev := range evs {
			s.pending[ev.Seq] = ev
			s.acked[ev.Seq] = make(chan struct{})
			s.nextSeq = max(s.nextSeq, ev.Seq+1)
		}
		if len(evs) > 0 {
			s.log.Warn("resending events a previous agent process left unacknowledged", "events", len(evs))
		}
	}
	a, err := s.connectRetry(ctx, time.Now().Add(cfg.ReconnectFor))
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil && len(s.recovered) > 0 {
		// Should this fail, the keeper reconnects and resends.
		if err := s.sendPending(conn); err != nil {
			s.dropConn(conn)
		}
	}
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopKeeper = stop
	s.wg.Add(2)
	go s.keep(kctx)
	go s.sendLogs()
	return s, a, nil
}

// Recovered returns the events a previous process of this attempt journaled but never saw
// acknowledged (nil without a journal). Dial resends them; they may have been applied since.
func (s *Session) Recovered() []protocol.Event { return s.recovered }

// Flush waits until every event sent before it is acknowledged, reconnecting and resending
// as needed, within ReconnectFor: the barrier after pipelined Sends. It fails like Report.
func (s *Session) Flush(ctx context.Context) error {
	s.mu.Lock()
	through := s.nextSeq - 1
	s.mu.Unlock()
	return s.wait(ctx, through)
}

func wsURL(service string) (string, error) {
	u, err := url.Parse(service)
	if err != nil {
		return "", fmt.Errorf("service url: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("service url %q: scheme must be http or https", service)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + protocol.Path
	return u.String(), nil
}

// refusedStatus reports whether an HTTP status on the upgrade means "never retry": a client
// error other than a timeout or rate limit.
func refusedStatus(code int) bool {
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

// connect dials, says hello and reads the assignment; on success it installs the connection
// (forgetting the events the assignment's NextSeq says were applied) and starts its reader.
// The caller holds the connecting slot (or is Dial).
func (s *Session) connect(ctx context.Context) (*protocol.Assignment, error) {
	u, err := wsURL(s.cfg.ServiceURL)
	if err != nil {
		return nil, err
	}
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, Proxy: http.ProxyFromEnvironment}
	s.mu.Lock()
	token := s.token
	s.mu.Unlock()
	conn, resp, err := d.DialContext(ctx, u, http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		if resp != nil && refusedStatus(resp.StatusCode) {
			return nil, fmt.Errorf("%w: dial %s: HTTP %d", ErrRefused, u, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	// The hello exchange does blocking reads that ignore ctx: close the connection when ctx
	// ends so that a cancel (or Close) is not held up for the read timeout.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	a, err := s.handshake(conn)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	done := make(chan struct{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return nil, ErrClosed
	}
	s.conn, s.connDone, s.connectedAt = conn, done, time.Now()
	s.connGen++
	gen := s.connGen
	// Events below NextSeq were applied before (their acks were lost with the previous
	// connection, or a previous process journaled them): forget them and let their waiters
	// return.
	for seq := range s.pending {
		if seq < a.NextSeq {
			s.acknowledged(seq)
		}
	}
	// Never reuse a number the coordinator has seen for this attempt: it would be taken for
	// a resend and silently dropped.
	s.nextSeq = max(s.nextSeq, a.NextSeq)
	s.wg.Add(1) // under mu with closed == false: Close has not started waiting
	s.mu.Unlock()
	go s.read(conn, gen, done)
	return a, nil
}

// handshake sends the hello and reads the assignment (or a Fatal).
func (s *Session) handshake(conn *websocket.Conn) (*protocol.Assignment, error) {
	b, err := protocol.Encode(s.cfg.Hello)
	if err != nil {
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		return nil, fmt.Errorf("send hello: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	_, frame, err := conn.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("read assignment: %w", err)
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		return nil, err
	}
	switch m := msg.(type) {
	case *protocol.Fatal:
		return nil, fmt.Errorf("%w: %s", ErrRefused, m.Message)
	case *protocol.Assignment:
		return m, nil
	default:
		return nil, fmt.Errorf("unexpected %T instead of an assignment", msg)
	}
}

// read handles acks, cancels and fatals of one connection until it breaks, or stays silent
// (no frame, no ping) for ReadTimeout.
func (s *Session) read(conn *websocket.Conn, gen int, done chan struct{}) {
	defer s.wg.Done()
	extend := func() { _ = conn.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout)) }
	conn.SetPingHandler(func(data string) error {
		extend()
		s.wmu.Lock()
		defer s.wmu.Unlock()
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	for {
		extend()
		_, frame, err := conn.ReadMessage()
		if err != nil {
			break
		}
		msg, err := protocol.Decode(frame)
		if err != nil {
			s.log.Warn("bad message from coordinator", "error", err)
			continue
		}
		switch m := msg.(type) {
		case *protocol.Ack:
			// An ack is valid whatever connection it came on: the coordinator applied the event.
			s.mu.Lock()
			if ev, ok := s.pending[m.Seq]; ok {
				s.acknowledged(m.Seq)
				s.log.Debug("event acknowledged", "seq", m.Seq, "state", ev.State)
			}
			s.mu.Unlock()
		case *protocol.Credential:
			// The coordinator's renewed session credential: presented on the next reconnect.
			if m.Token != "" {
				s.mu.Lock()
				s.token = m.Token
				s.mu.Unlock()
			}
		case *protocol.Cancel:
			select {
			case s.cancels <- *m:
			default: // a cancel is already waiting: one is enough
			}
		case *protocol.Fatal:
			s.mu.Lock()
			s.refuse(fmt.Errorf("%w: %s", ErrRefused, m.Message))
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	current := s.connGen == gen
	if current {
		s.conn, s.connDone = nil, nil
		s.brokeAt = time.Now()
	}
	reconnect := current && !s.closed && s.fatal == nil
	s.mu.Unlock()
	conn.Close()
	close(done)
	if reconnect {
		select {
		case s.lost <- struct{}{}:
		default:
		}
	}
}

// keep reconnects in the background whenever the current connection breaks, so that the
// coordinator sees the agent's heartbeat and can deliver a cancel while no event is being
// reported. It stops at Close, on a refusal, or when the coordinator stayed unreachable for
// ReconnectFor since the connection broke: it then closes Unreachable.
func (s *Session) keep(ctx context.Context) {
	defer s.wg.Done()
	backoff := s.cfg.MinBackoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.lost:
		}
		lostAt := time.Now()
		s.mu.Lock()
		healthy := time.Since(s.connectedAt) > s.cfg.MaxBackoff
		s.mu.Unlock()
		if healthy {
			backoff = s.cfg.MinBackoff
		}
		if err := sleep(ctx, jitter(backoff), nil); err != nil {
			return
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
		if _, _, err := s.ensureConn(ctx, lostAt.Add(s.cfg.ReconnectFor)); err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrRefused) || errors.Is(err, ErrClosed) {
				return
			}
			s.log.Error("the coordinator stayed unreachable: giving up", "for", s.cfg.ReconnectFor, "error", err)
			s.unreachableOnce.Do(func() { close(s.unreachable) })
			return
		}
	}
}

// Unreachable is closed when the connection broke and the coordinator stayed unreachable for
// ReconnectFor since, while no Report was waiting (a waiting Report fails with ErrUnreachable
// instead). The agent should then stop its work: nothing it does can be reported.
func (s *Session) Unreachable() <-chan struct{} { return s.unreachable }

// Cancels delivers the coordinator's cancel of the job.
func (s *Session) Cancels() <-chan protocol.Cancel { return s.cancels }

// Refused is closed once the coordinator refused this agent (it rejected an event, or the
// agent's credential on a reconnect): nothing more can be delivered, and every later Send,
// Report and Flush fails with the refusal (wrapping ErrRefused).
func (s *Session) Refused() <-chan struct{} { return s.refused }

// Send hands ev over for delivery (its Seq is assigned here) and returns without waiting for
// the coordinator's acknowledgement: the event is journaled, then written on the live
// connection after every event sent before it, or on the next connection if there is none
// (the keeper reconnects and resends). It waits only while MaxPending events are
// unacknowledged. It fails only when the coordinator refused the agent (ErrRefused), the
// session is closed, or ctx ends while it waits for room; a coordinator that does not answer
// does not fail it (Unreachable says so, and a barrier fails with ErrUnreachable).
func (s *Session) Send(ctx context.Context, ev protocol.Event) error {
	_, err := s.send(ctx, ev)
	return err
}

// Report delivers ev and returns once the coordinator acknowledged it and every event sent
// before it, reconnecting and resending as needed. It fails only when the coordinator refused
// the agent (ErrRefused), ctx ends, the session is closed, or the event stayed unacknowledged
// (the coordinator unreachable) for ReconnectFor. An event whose Report failed stays pending
// and is resent before the next one, so the coordinator sees every sequence number in order.
func (s *Session) Report(ctx context.Context, ev protocol.Event) error {
	seq, err := s.send(ctx, ev)
	if err != nil {
		return err
	}
	return s.wait(ctx, seq)
}

// send assigns ev its sequence number, journals it, makes it pending and writes what is
// pending on the live connection. It returns the event's Seq.
func (s *Session) send(ctx context.Context, ev protocol.Event) (int64, error) {
	s.mu.Lock()
	for {
		if s.fatal != nil || s.closed {
			err := s.fatal
			if err == nil {
				err = ErrClosed
			}
			s.mu.Unlock()
			return 0, err
		}
		if len(s.pending) < s.cfg.MaxPending {
			break
		}
		oldest := s.lowestPending(s.nextSeq)
		s.mu.Unlock()
		if err := s.wait(ctx, oldest); err != nil {
			return 0, err
		}
		s.mu.Lock()
	}
	ev.Seq = s.nextSeq
	s.nextSeq++
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	s.pending[ev.Seq] = ev
	s.acked[ev.Seq] = make(chan struct{})
	if s.journal != nil {
		if err := s.journal.append(ev); err != nil {
			// The event still goes out live; only a crash before its ack would lose it.
			s.log.Warn("event not journaled", "seq", ev.Seq, "error", err)
		}
	}
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		if err := s.sendPending(conn); err != nil && !errors.Is(err, errNotCurrent) {
			// The keeper reconnects (the reader sees the broken connection) and resends.
			s.log.Warn("event not sent, resending after a reconnect", "seq", ev.Seq, "error", err)
			s.dropConn(conn)
		}
	}
	return ev.Seq, nil
}

// lowestPending returns the lowest pending sequence number up to through (0 if none). The
// caller holds mu.
func (s *Session) lowestPending(through int64) int64 {
	var low int64
	for seq := range s.pending {
		if seq <= through && (low == 0 || seq < low) {
			low = seq
		}
	}
	return low
}

// wait returns once every event up to through is acknowledged, reconnecting and resending
// as needed; it fails like Report.
func (s *Session) wait(ctx context.Context, through int64) error {
	deadline := time.Now().Add(s.cfg.ReconnectFor)
	backoff := s.cfg.MinBackoff
	for {
		s.mu.Lock()
		low := s.lowestPending(through)
		ch, fatal, closed := s.acked[low], s.fatal, s.closed
		s.mu.Unlock()
		switch {
		case low == 0:
			return nil
		case fatal != nil:
			return fatal
		case closed:
			return ErrClosed
		}
		conn, done, err := s.ensureConn(ctx, deadline)
		if err != nil {
			return err
		}
		err = s.sendPending(conn)
		if errors.Is(err, errNotCurrent) {
			continue
		}
		if err == nil {
			select {
			case <-ch: // acknowledged (or refused): look again
				continue
			case <-ctx.Done():
				return ctx.Err()
			case <-done:
				s.log.Warn("connection lost before the acknowledgement", "seq", low)
			}
		}
		s.dropConn(conn)
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: event %d not acknowledged within %s", ErrUnreachable, low, s.cfg.ReconnectFor)
		}
		if err := sleep(ctx, jitter(backoff), ch); err != nil {
			return err
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

// errNotCurrent says the connection given to sendPending was replaced meanwhile.
var errNotCurrent = errors.New("connection replaced")

// sendPending writes, in sequence order, the pending events not yet written on conn, which
// must be the current connection. Each written event gets a timer that replaces the
// connection should the event stay unacknowledged for AckTimeout.
func (s *Session) sendPending(conn *websocket.Conn) error {
	s.smu.Lock()
	defer s.smu.Unlock()
	s.mu.Lock()
	if s.conn != conn {
		s.mu.Unlock()
		return errNotCurrent
	}
	if s.sentConn != conn {
		s.sentConn, s.sentThrough = conn, 0
	}
	seqs := make([]int64, 0, len(s.pending))
	for seq := range s.pending {
		if seq > s.sentThrough {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	evs := make([]protocol.Event, 0, len(seqs))
	for _, seq := range seqs {
		evs = append(evs, s.pending[seq])
	}
	s.mu.Unlock()
	for _, ev := range evs {
		b, err := protocol.Encode(ev)
		if err != nil {
			return err
		}
		s.wmu.Lock()
		_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		err = conn.WriteMessage(websocket.TextMessage, b)
		s.wmu.Unlock()
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.sentConn == conn {
			s.sentThrough = ev.Seq
		}
		if _, ok := s.pending[ev.Seq]; ok && !s.closed {
			if t := s.timers[ev.Seq]; t != nil {
				t.Stop()
			}
			seq := ev.Seq
			s.timers[seq] = time.AfterFunc(s.cfg.AckTimeout, func() { s.ackTimedOut(conn, seq) })
		}
		s.mu.Unlock()
	}
	return nil
}

// ackTimedOut replaces conn if event seq, written on it AckTimeout ago, is still pending and
// conn still current: the keeper (or a waiter) reconnects and resends.
func (s *Session) ackTimedOut(conn *websocket.Conn, seq int64) {
	s.mu.Lock()
	_, pending := s.pending[seq]
	current := s.conn == conn && s.fatal == nil && !s.closed
	s.mu.Unlock()
	if pending && current {
		s.log.Warn("no acknowledgement, reconnecting", "seq", seq, "after", s.cfg.AckTimeout)
		s.dropConn(conn)
	}
}

// acknowledged forgets the pending event seq (the coordinator applied it) and releases its
// waiters. The caller holds mu.
func (s *Session) acknowledged(seq int64) {
	delete(s.pending, seq)
	s.journalAck(seq)
	if ch, ok := s.acked[seq]; ok {
		close(ch)
		delete(s.acked, seq)
	}
	if t, ok := s.timers[seq]; ok {
		t.Stop()
		delete(s.timers, seq)
	}
}

// refuse records the coordinator's refusal (the first one wins) and releases every waiter.
// The refused events stay in the journal, as the record of what this attempt could not
// deliver. The caller holds mu.
func (s *Session) refuse(err error) {
	if s.fatal != nil {
		return
	}
	s.fatal = err
	close(s.refused)
	for seq, ch := range s.acked {
		close(ch)
		delete(s.acked, seq)
	}
	s.stopTimers()
}

// stopTimers stops every acknowledgement timer. The caller holds mu.
func (s *Session) stopTimers() {
	for seq, t := range s.timers {
		t.Stop()
		delete(s.timers, seq)
	}
}

// ensureConn returns the live connection (and the channel closed when it breaks), or
// connects, retrying with backoff until deadline.
func (s *Session) ensureConn(ctx context.Context, deadline time.Time) (*websocket.Conn, <-chan struct{}, error) {
	backoff := s.cfg.MinBackoff
	for {
		select {
		case s.connecting <- struct{}{}:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		s.mu.Lock()
		conn, done, fatal, closed, brokeAt := s.conn, s.connDone, s.fatal, s.closed, s.brokeAt
		s.mu.Unlock()
		var err error
		switch {
		case fatal != nil:
			err = fatal
		case closed:
			err = ErrClosed
		case conn != nil:
		default:
			// Never straight back after a connection broke (the coordinator may be going down,
			// or have just refused an event): at least half the least backoff.
			if d := time.Until(brokeAt.Add(s.cfg.MinBackoff / 2)); d > 0 {
				<-s.connecting
				if err := sleep(ctx, d, nil); err != nil {
					return nil, nil, err
				}
				continue
			}
			var a *protocol.Assignment
			if a, err = s.connect(ctx); err == nil {
				s.log.Info("connected to the coordinator", "next_seq", a.NextSeq)
				<-s.connecting
				// What is pending goes out on the new connection at once, whoever connected.
				s.mu.Lock()
				c := s.conn
				s.mu.Unlock()
				if c == nil {
					continue
				}
				if err = s.sendPending(c); err == nil || errors.Is(err, errNotCurrent) {
					continue
				}
				s.dropConn(c)
				s.log.Warn("resend after a reconnect failed, retrying", "error", err, "in", backoff)
				if err := sleep(ctx, jitter(backoff), nil); err != nil {
					return nil, nil, err
				}
				backoff = min(backoff*2, s.cfg.MaxBackoff)
				continue
			}
		}
		<-s.connecting
		if conn != nil || fatal != nil || closed {
			return conn, done, err
		}
		if errors.Is(err, ErrRefused) {
			s.mu.Lock()
			s.refuse(err)
			s.mu.Unlock()
			return nil, nil, err
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if errors.Is(err, ErrClosed) {
			return nil, nil, err
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%w for %s: %w", ErrUnreachable, s.cfg.ReconnectFor, err)
		}
		s.log.Warn("coordinator unreachable, retrying", "error", err, "in", backoff)
		if err := sleep(ctx, jitter(backoff), nil); err != nil {
			return nil, nil, err
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

// connectRetry is Dial's first connection: ensureConn's loop, returning the assignment.
func (s *Session) connectRetry(ctx context.Context, deadline time.Time) (*protocol.Assignment, error) {
	backoff := s.cfg.MinBackoff
	for {
		a, err := s.connect(ctx)
		if err == nil {
			return a, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrRefused) {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w for %s: %w", ErrUnreachable, s.cfg.ReconnectFor, err)
		}
		s.log.Warn("coordinator unreachable, retrying", "error", err, "in", backoff)
		if err := sleep(ctx, jitter(backoff), nil); err != nil {
			return nil, err
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

func (s *Session) dropConn(conn *websocket.Conn) {
	s.mu.Lock()
	if s.conn == conn {
		s.conn, s.connDone = nil, nil
		s.brokeAt = time.Now()
	}
	s.mu.Unlock()
	conn.Close()
}

// journalAck records an acknowledgement in the journal. The caller holds mu.
func (s *Session) journalAck(seq int64) {
	if s.journal == nil {
		return
	}
	if err := s.journal.ack(seq); err != nil {
		s.log.Warn("journal acknowledgement", "seq", seq, "error", err)
	}
}

// Log queues container output lines for sending, best effort: it never blocks; a batch is
// dropped when the queue is full or, once dequeued, when the agent is disconnected. Log
// frames are sent by their own goroutine, one at a time, so that a burst of output never
// holds up a state event for more than one frame.
func (s *Session) Log(stream string, lines []string) {
	select {
	case s.logs <- protocol.Log{Stream: stream, Lines: lines}:
	default:
		s.mu.Lock()
		s.logsDropped++
		s.mu.Unlock()
	}
}

// Progress queues a transfer progress report, best effort like Log (and through the same
// queue): it never blocks, and a report is dropped when the queue is full or the agent is
// disconnected (a later one supersedes it anyway).
func (s *Session) Progress(p protocol.Progress) {
	select {
	case s.logs <- p:
	default:
		s.mu.Lock()
		s.logsDropped++
		s.mu.Unlock()
	}
}

// LogsDropped returns how many Log batches (and Progress reports) were dropped because the
// queue was full.
func (s *Session) LogsDropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logsDropped
}

func (s *Session) sendLogs() {
	defer s.wg.Done()
	for {
		var l any
		select {
		case <-s.stopLogs:
			return
		case l = <-s.logs:
		}
		s.mu.Lock()
		conn := s.conn
		s.mu.Unlock()
		if conn == nil {
			continue
		}
		b, err := protocol.Encode(l)
		if err != nil {
			continue
		}
		s.wmu.Lock()
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = conn.WriteMessage(websocket.TextMessage, b)
		s.wmu.Unlock()
	}
}

// Close ends the session with a normal close and waits for its goroutines. Pending events
// are abandoned; Report returns ErrClosed from now on. Close is idempotent.
func (s *Session) Close() {
	s.mu.Lock()
	conn := s.conn
	already := s.closed
	s.closed = true
	s.conn, s.connDone = nil, nil
	s.stopTimers()
	s.mu.Unlock()
	if s.stopKeeper != nil {
		s.stopKeeper()
	}
	if !already {
		close(s.stopLogs)
	}
	if conn != nil {
		s.wmu.Lock()
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		s.wmu.Unlock()
		conn.Close()
	}
	s.wg.Wait()
	s.mu.Lock()
	if s.journal != nil {
		_ = s.journal.close()
		s.journal = nil
	}
	s.mu.Unlock()
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// sleep waits d, or until ctx ends (its error) or wake closes (nil).
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
		return nil
	case <-t.C:
		return nil
	}
}
