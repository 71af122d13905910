// Package session is the agent's end of the agent websocket (shared/protocol): it dials the
// coordinator with the agent's token, says hello, receives the assignment, and delivers state
// events exactly once: each event gets the next sequence number, stays pending until the
// coordinator acknowledges it, and is resent after a reconnect (backoff with jitter). Cancel
// messages are surfaced on a channel. It knows nothing about what the events mean.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kbase/cts/shared/protocol"
)

// ErrRefused means the coordinator refused this agent (Fatal): do not retry.
var ErrRefused = errors.New("refused by the coordinator")

// Config says where and who.
type Config struct {
	// ServiceURL is the coordinator's root URL (http or https).
	ServiceURL string
	Token      string
	Hello      protocol.Hello
	// ReconnectFor bounds how long the session keeps trying to reach the coordinator after a
	// disconnect before Report gives up (default 6 h, the CTS JOB_UPDATE_TIMEOUT_MIN).
	ReconnectFor time.Duration
	// AckTimeout is how long an event may stay unacknowledged on a live connection before the
	// connection is considered dead (default 60 s).
	AckTimeout time.Duration
	Log        *slog.Logger
}

// Session is a live agent session. Report is safe for concurrent use.
type Session struct {
	cfg     Config
	log     *slog.Logger
	cancels chan protocol.Cancel

	mu      sync.Mutex
	conn    *websocket.Conn
	connGen int
	nextSeq int64
	pending map[int64]protocol.Event
	acked   map[int64]chan struct{}
	fatal   error
	closed  bool
	wmu     sync.Mutex
}

// Dial connects and returns the session and the agent's assignment.
func Dial(ctx context.Context, cfg Config) (*Session, *protocol.Assignment, error) {
	if cfg.ReconnectFor <= 0 {
		cfg.ReconnectFor = 6 * time.Hour
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 60 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Session{cfg: cfg, log: cfg.Log, cancels: make(chan protocol.Cancel, 1),
		pending: map[int64]protocol.Event{}, acked: map[int64]chan struct{}{}}
	a, err := s.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	s.nextSeq = a.NextSeq
	if s.nextSeq < 1 {
		s.nextSeq = 1
	}
	return s, a, nil
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

// connect dials, says hello and reads the assignment; it starts the reader of the connection.
func (s *Session) connect(ctx context.Context) (*protocol.Assignment, error) {
	u, err := wsURL(s.cfg.ServiceURL)
	if err != nil {
		return nil, err
	}
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, Proxy: http.ProxyFromEnvironment}
	conn, resp, err := d.DialContext(ctx, u, http.Header{"Authorization": {"Bearer " + s.cfg.Token}})
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return nil, fmt.Errorf("%w: dial %s: HTTP %d", ErrRefused, u, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	b, _ := protocol.Encode(s.cfg.Hello)
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send hello: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	_, frame, err := conn.ReadMessage()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read assignment: %w", err)
	}
	msg, err := protocol.Decode(frame)
	if err != nil {
		conn.Close()
		return nil, err
	}
	switch m := msg.(type) {
	case *protocol.Fatal:
		conn.Close()
		return nil, fmt.Errorf("%w: %s", ErrRefused, m.Message)
	case *protocol.Assignment:
		_ = conn.SetReadDeadline(time.Time{})
		conn.SetPingHandler(func(data string) error {
			s.wmu.Lock()
			defer s.wmu.Unlock()
			return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
		})
		s.mu.Lock()
		s.conn = conn
		s.connGen++
		gen := s.connGen
		s.mu.Unlock()
		go s.read(conn, gen)
		return m, nil
	default:
		conn.Close()
		return nil, fmt.Errorf("unexpected %T instead of an assignment", msg)
	}
}

// read handles acks, cancels and fatals of one connection until it breaks.
func (s *Session) read(conn *websocket.Conn, gen int) {
	for {
		_, frame, err := conn.ReadMessage()
		if err != nil {
			s.mu.Lock()
			if s.connGen == gen {
				s.conn = nil
			}
			s.mu.Unlock()
			conn.Close()
			return
		}
		msg, err := protocol.Decode(frame)
		if err != nil {
			s.log.Warn("bad message from coordinator", "error", err)
			continue
		}
		switch m := msg.(type) {
		case *protocol.Ack:
			s.mu.Lock()
			delete(s.pending, m.Seq)
			if ch, ok := s.acked[m.Seq]; ok {
				close(ch)
				delete(s.acked, m.Seq)
			}
			s.mu.Unlock()
		case *protocol.Cancel:
			select {
			case s.cancels <- *m:
			default:
			}
		case *protocol.Fatal:
			s.mu.Lock()
			s.fatal = fmt.Errorf("%w: %s", ErrRefused, m.Message)
			for seq, ch := range s.acked {
				close(ch)
				delete(s.acked, seq)
			}
			s.mu.Unlock()
		}
	}
}

// Cancels delivers the coordinator's cancel of the job.
func (s *Session) Cancels() <-chan protocol.Cancel { return s.cancels }

// Report delivers ev (its Seq is assigned here) and returns once the coordinator acknowledged
// it, reconnecting as needed. It fails only when the coordinator refused the agent, ctx ends,
// or the coordinator stayed unreachable for ReconnectFor.
func (s *Session) Report(ctx context.Context, ev protocol.Event) error {
	s.mu.Lock()
	if s.fatal != nil {
		err := s.fatal
		s.mu.Unlock()
		return err
	}
	ev.Seq = s.nextSeq
	s.nextSeq++
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	s.pending[ev.Seq] = ev
	ch := make(chan struct{})
	s.acked[ev.Seq] = ch
	s.mu.Unlock()

	deadline := time.Now().Add(s.cfg.ReconnectFor)
	backoff := 500 * time.Millisecond
	for {
		conn, err := s.ensureConn(ctx, deadline)
		if err != nil {
			return err
		}
		if err := s.resendPending(conn); err == nil {
			select {
			case <-ch:
				s.mu.Lock()
				err := s.fatal
				s.mu.Unlock()
				return err
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(s.cfg.AckTimeout):
				s.log.Warn("no acknowledgement, reconnecting", "seq", ev.Seq)
			}
		}
		s.dropConn(conn)
		if err := sleep(ctx, jitter(backoff)); err != nil {
			return err
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// resendPending sends every unacknowledged event in sequence order on conn.
func (s *Session) resendPending(conn *websocket.Conn) error {
	s.mu.Lock()
	var seqs []int64
	for seq := range s.pending {
		seqs = append(seqs, seq)
	}
	evs := make([]protocol.Event, 0, len(seqs))
	for _, seq := range sortInts(seqs) {
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
	}
	return nil
}

func sortInts(v []int64) []int64 {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	return v
}

// ensureConn returns the live connection or reconnects with backoff until deadline.
func (s *Session) ensureConn(ctx context.Context, deadline time.Time) (*websocket.Conn, error) {
	backoff := 500 * time.Millisecond
	for {
		s.mu.Lock()
		conn, fatal, closed := s.conn, s.fatal, s.closed
		s.mu.Unlock()
		if fatal != nil {
			return nil, fatal
		}
		if closed {
			return nil, errors.New("session closed")
		}
		if conn != nil {
			return conn, nil
		}
		a, err := s.connect(ctx)
		if err == nil {
			s.mu.Lock()
			// Events below NextSeq were applied before the disconnect: forget them.
			for seq, ch := range s.acked {
				if seq < a.NextSeq {
					delete(s.pending, seq)
					close(ch)
					delete(s.acked, seq)
				}
			}
			s.mu.Unlock()
			s.log.Info("reconnected to the coordinator", "next_seq", a.NextSeq)
			continue
		}
		if errors.Is(err, ErrRefused) {
			s.mu.Lock()
			s.fatal = err
			s.mu.Unlock()
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("coordinator unreachable: %w", err)
		}
		s.log.Warn("coordinator unreachable, retrying", "error", err, "in", backoff)
		if err := sleep(ctx, jitter(backoff)); err != nil {
			return nil, err
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (s *Session) dropConn(conn *websocket.Conn) {
	s.mu.Lock()
	if s.conn == conn {
		s.conn = nil
	}
	s.mu.Unlock()
	conn.Close()
}

// Log sends container output lines, best effort: dropped when disconnected.
func (s *Session) Log(stream string, lines []string) {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn == nil {
		return
	}
	b, err := protocol.Encode(protocol.Log{Stream: stream, Lines: lines})
	if err != nil {
		return
	}
	s.wmu.Lock()
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = conn.WriteMessage(websocket.TextMessage, b)
	s.wmu.Unlock()
}

// Close ends the session with a normal close.
func (s *Session) Close() {
	s.mu.Lock()
	conn := s.conn
	s.closed = true
	s.conn = nil
	s.mu.Unlock()
	if conn != nil {
		s.wmu.Lock()
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		s.wmu.Unlock()
		conn.Close()
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
