// Package logstream turns a container's output stream into rate-limited batches of lines for
// the coordinator's live view. A Stream is an io.Writer placed beside the log file (the file
// keeps every byte; the live view is best effort): it splits the output into lines, admits
// them through a token bucket (lines per second and bytes per second), replaces what it had
// to drop by one "N lines dropped" marker, and hands batches to a Sink from its own
// goroutine. Write never blocks on the network and never fails, so a chatty container can
// neither slow down nor break its own log file or the agent's state reports.
//
// It knows nothing about websockets or the protocol beyond the Sink it is given.
package logstream

import (
	"fmt"
	"sync"
	"time"
)

// Sink receives batches of lines. Log must not block (session.Session.Log queues or drops).
type Sink interface {
	Log(stream string, lines []string)
}

// Config bounds a Stream. Zero values take the defaults.
type Config struct {
	// LinesPerSecond is the sustained line rate (default 50); the bucket holds one second.
	LinesPerSecond int
	// BytesPerSecond is the sustained byte rate (default 64 KiB); the bucket holds one second.
	BytesPerSecond int
	// MaxLineBytes truncates longer lines (default 4 KiB).
	MaxLineBytes int
	// FlushInterval is how often a batch is handed to the Sink (default 250 ms).
	FlushInterval time.Duration
	// Now is the clock (time.Now when nil); tests set it.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.LinesPerSecond <= 0 {
		c.LinesPerSecond = 50
	}
	if c.BytesPerSecond <= 0 {
		c.BytesPerSecond = 64 << 10
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = 4 << 10
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 250 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Stream is one container stream ("stdout" or "stderr"). Create it with New, Close it when
// the container has exited.
type Stream struct {
	name string
	cfg  Config
	sink Sink

	mu        sync.Mutex
	partial   []byte // an unterminated line
	skipRest  bool   // the current line was truncated: drop its remainder
	batch     []string
	dropped   int64 // lines dropped since the last marker
	total     int64 // lines dropped in all
	lineTok   float64
	byteTok   float64
	last      time.Time
	closed    bool
	stop      chan struct{}
	done      chan struct{}
	flushNow  chan struct{}
	maxBatch  int
	sentLines int64
}

// New starts a Stream that delivers to sink.
func New(name string, sink Sink, cfg Config) *Stream {
	cfg.defaults()
	s := &Stream{name: name, cfg: cfg, sink: sink, lineTok: float64(cfg.LinesPerSecond),
		byteTok: float64(cfg.BytesPerSecond), last: cfg.Now(), stop: make(chan struct{}),
		done: make(chan struct{}), flushNow: make(chan struct{}, 1), maxBatch: cfg.LinesPerSecond}
	go s.loop()
	return s
}

// Write splits p into lines and admits them; it always reports len(p) written.
func (s *Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return len(p), nil
	}
	for _, b := range p {
		if b == '\n' {
			if !s.skipRest || len(s.partial) > 0 {
				s.admit(string(s.partial))
			}
			s.partial, s.skipRest = s.partial[:0], false
			continue
		}
		if s.skipRest {
			continue
		}
		if len(s.partial) >= s.cfg.MaxLineBytes {
			s.admit(string(s.partial) + " [truncated]")
			s.partial, s.skipRest = s.partial[:0], true
			continue
		}
		s.partial = append(s.partial, b)
	}
	return len(p), nil
}

// admit takes tokens for line or counts it dropped. The caller holds mu.
func (s *Stream) admit(line string) {
	now := s.cfg.Now()
	el := now.Sub(s.last).Seconds()
	s.last = now
	if el > 0 {
		s.lineTok = min(float64(s.cfg.LinesPerSecond), s.lineTok+el*float64(s.cfg.LinesPerSecond))
		s.byteTok = min(float64(s.cfg.BytesPerSecond), s.byteTok+el*float64(s.cfg.BytesPerSecond))
	}
	need := float64(len(line) + 1)
	if s.lineTok < 1 || s.byteTok < need || len(s.batch) >= 4*s.maxBatch {
		s.dropped++
		s.total++
		return
	}
	s.lineTok--
	s.byteTok -= need
	if s.dropped > 0 {
		s.batch = append(s.batch, fmt.Sprintf("[cts-agent: %d lines dropped (live log rate limit; the log file keeps them)]", s.dropped))
		s.dropped = 0
	}
	s.batch = append(s.batch, line)
	if len(s.batch) >= s.maxBatch {
		select {
		case s.flushNow <- struct{}{}:
		default:
		}
	}
}

func (s *Stream) loop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.flush()
			return
		case <-t.C:
		case <-s.flushNow:
		}
		s.flush()
	}
}

func (s *Stream) flush() {
	s.mu.Lock()
	b := s.batch
	s.batch = nil
	s.sentLines += int64(len(b))
	s.mu.Unlock()
	if len(b) > 0 {
		s.sink.Log(s.name, b)
	}
}

// Close delivers the last partial line and what is batched, a final marker if lines were
// dropped since the last one, and stops the Stream. It is idempotent.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if len(s.partial) > 0 {
		s.admit(string(s.partial))
		s.partial = nil
	}
	if s.dropped > 0 {
		s.batch = append(s.batch, fmt.Sprintf("[cts-agent: %d lines dropped (live log rate limit; the log file keeps them)]", s.dropped))
		s.dropped = 0
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return nil
}

// Dropped returns how many lines were dropped in all.
func (s *Stream) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}
