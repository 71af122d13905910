package agentws

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
)

// liveness keeps, in memory, which agents are connected to this replica and when each was
// last heard from (any frame or pong), and writes the heartbeats of all of them to the store
// in one write per interval. With thousands of agents a write per agent heartbeat would be
// thousands of store round trips per ping interval, queued behind the events; one bulk write
// per interval is one round trip whatever the number of agents. The store's LastSeen thus
// lags by up to an interval (the reconciler's deadline is minutes), and the reconciler asks
// Connected first: an agent connected here is heard from, whatever the store says.
type liveness struct {
	interval time.Duration
	touch    func(ctx context.Context, ts []jobs.Touch) (int, error)
	log      *slog.Logger

	mu     sync.Mutex
	agents map[agentKey]*liveAgent
	// dirty are the agents heard from since the last write (including those gone since).
	dirty map[agentKey]jobs.Touch

	start     sync.Once
	closeOnce sync.Once
	stop      chan struct{}
	stopped   chan struct{}
}

type agentKey struct {
	job       string
	container int
	attempt   string
}

type liveAgent struct {
	sessions int // sessions of this agent open here (a reconnect may overlap its old session)
}

func newLiveness(interval time.Duration, touch func(context.Context, []jobs.Touch) (int, error), log *slog.Logger) *liveness {
	return &liveness{interval: interval, touch: touch, log: log, agents: map[agentKey]*liveAgent{},
		dirty: map[agentKey]jobs.Touch{}, stop: make(chan struct{}), stopped: make(chan struct{})}
}

// join records a session of agent k; the writer starts with the first.
func (l *liveness) join(k agentKey) {
	l.start.Do(func() { go l.run() })
	l.mu.Lock()
	a := l.agents[k]
	if a == nil {
		a = &liveAgent{}
		l.agents[k] = a
	}
	a.sessions++
	l.mu.Unlock()
	l.seen(k)
}

// leave ends a session of agent k; its last contact is still written.
func (l *liveness) leave(k agentKey) {
	l.seen(k)
	l.mu.Lock()
	if a := l.agents[k]; a != nil {
		if a.sessions--; a.sessions <= 0 {
			delete(l.agents, k)
		}
	}
	l.mu.Unlock()
}

// seen records that agent k was heard from now.
func (l *liveness) seen(k agentKey) {
	t := jobs.Touch{JobID: k.job, Sub: k.container, Attempt: k.attempt, At: jobs.Now()}
	l.mu.Lock()
	l.dirty[k] = t
	l.mu.Unlock()
}

// connected reports whether an agent of the container is connected here; attempt, when set,
// must be its attempt.
func (l *liveness) connected(job string, container int, attempt string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if attempt != "" {
		return l.agents[agentKey{job, container, attempt}] != nil
	}
	for k := range l.agents {
		if k.job == job && k.container == container {
			return true
		}
	}
	return false
}

// run writes the heartbeats every interval until close, then once more.
func (l *liveness) run() {
	defer close(l.stopped)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.flush()
			return
		case <-t.C:
			l.flush()
		}
	}
}

// flush writes the heartbeats heard since the last write, in one store call. A failed write
// is not retried: the next interval writes newer heartbeats of the agents still connected.
func (l *liveness) flush() {
	l.mu.Lock()
	if len(l.dirty) == 0 {
		l.mu.Unlock()
		return
	}
	ts := make([]jobs.Touch, 0, len(l.dirty))
	for _, t := range l.dirty {
		ts = append(ts, t)
	}
	l.dirty = map[agentKey]jobs.Touch{}
	l.mu.Unlock()
	ctx := context.Background()
	if _, err := l.touch(ctx, ts); err != nil {
		l.log.WarnContext(ctx, "record agent heartbeats", "agents", len(ts), "error", err)
	}
}

// close writes the last heartbeats and stops the writer (if it started).
func (l *liveness) close() {
	started := true
	l.start.Do(func() { started = false })
	if !started {
		return
	}
	l.closeOnce.Do(func() { close(l.stop) })
	<-l.stopped
}
