package agentws

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
)

// Presence records which agents are connected to a replica (implemented by package store):
// the heartbeats of connected agents, in a few point writes whatever their number.
type Presence interface {
	// PutPresence records the agents connected to replica at at (those with a zero At) and
	// those that left it recently (At: when they left), replacing what replica recorded before.
	PutPresence(ctx context.Context, replica string, at time.Time, agents []jobs.Touch) error
}

// liveness keeps, in memory, which agents are connected to this replica, and records it in
// the store once per interval, so that every replica's reconciler can tell a silent agent
// from one connected elsewhere.
//
// A connected agent is heard from: its session pings it every PingInterval and ends when it
// has not answered for ReadTimeout. So the heartbeats of the connected agents are not a write
// per agent and not an update of their sub-jobs (one update listing every agent was a scan of
// every sub-job on FerretDB, seconds with thousands of agents, holding the store's one
// connection): they are this replica's presence record (Presence), rewritten once per
// interval in a few point writes, and the reconciler takes a listed agent's LastSeen as the
// record's time. An agent that leaves while its container has not ended stays in the record,
// with the time it left, for leftKeep (so a reconciler learns of every agent that connected,
// however briefly, without reading its sub-job), and gets its sub-job's LastSeen written (a
// point write per such agent, for a reconciler that starts later). An agent whose last event
// ended its container needs nothing.
//
// On this replica the reconciler asks Connected first: an agent connected here is heard from
// now, whatever the store says.
type liveness struct {
	interval time.Duration
	replica  string
	presence Presence // nil: nothing recorded for the connected agents (a lone replica)
	touch    func(ctx context.Context, ts []jobs.Touch) (int, error)
	log      *slog.Logger

	mu     sync.Mutex
	agents map[agentKey]*liveAgent
	// containers counts the agents in agents by container (whatever their attempt).
	containers map[containerKey]int
	// left are the agents gone since the last write whose containers had not ended; gone
	// those gone within leftKeep, with when.
	left map[agentKey]jobs.Touch
	gone map[agentKey]time.Time
	// written is the number of agents the last presence write listed (-1: none written yet).
	written int
	// frozen: the replica is shutting down (freeze); sessions ending now stay listed, so the
	// last write records every agent connected until the shutdown.
	frozen bool

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

type containerKey struct {
	job       string
	container int
}

type liveAgent struct {
	sessions int // sessions of this agent open here (a reconnect may overlap its old session)
}

func newLiveness(interval time.Duration, replica string, presence Presence, touch func(context.Context, []jobs.Touch) (int, error), log *slog.Logger) *liveness {
	return &liveness{interval: interval, replica: replica, presence: presence, touch: touch, log: log,
		agents: map[agentKey]*liveAgent{}, containers: map[containerKey]int{}, left: map[agentKey]jobs.Touch{}, gone: map[agentKey]time.Time{}, written: -1,
		stop: make(chan struct{}), stopped: make(chan struct{})}
}

// join records a session of agent k; the writer starts with the first.
func (l *liveness) join(k agentKey) {
	l.start.Do(func() { go l.run() })
	l.mu.Lock()
	a := l.agents[k]
	if a == nil {
		a = &liveAgent{}
		l.agents[k] = a
		l.containers[containerKey{k.job, k.container}]++
	}
	a.sessions++
	delete(l.left, k)
	delete(l.gone, k)
	l.mu.Unlock()
}

// leave ends a session of agent k. Unless ended (its last event ended its container), when it
// was last heard from (now) is written to its sub-job with the next write.
func (l *liveness) leave(k agentKey, ended bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.agents[k]
	if a == nil || l.frozen {
		return
	}
	if a.sessions--; a.sessions > 0 {
		return
	}
	delete(l.agents, k)
	if ck := (containerKey{k.job, k.container}); l.containers[ck] <= 1 {
		delete(l.containers, ck)
	} else {
		l.containers[ck]--
	}
	if !ended {
		now := jobs.Now()
		l.left[k] = jobs.Touch{JobID: k.job, Sub: k.container, Attempt: k.attempt, At: now}
		l.gone[k] = now
	}
}

// leftKeep is how long an agent that left stays in the presence record: beyond any
// reconciler's heartbeat deadline (2 min by default).
const leftKeep = 10 * time.Minute

// connected reports whether an agent of the container is connected here; attempt, when set,
// must be its attempt.
func (l *liveness) connected(job string, container int, attempt string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if attempt != "" {
		return l.agents[agentKey{job, container, attempt}] != nil
	}
	return l.containers[containerKey{job, container}] > 0
}

// run writes every interval until close, then once more.
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

// flush writes this replica's presence (when it has agents, or had at the last write) and the
// last contact of the agents that left. A failed write is not retried: the next interval's
// presence replaces it; a failed touch is logged (the agent, if it reconnects, is heard again).
func (l *liveness) flush() {
	l.mu.Lock()
	present := make([]jobs.Touch, 0, len(l.agents)+len(l.gone))
	for k := range l.agents {
		present = append(present, jobs.Touch{JobID: k.job, Sub: k.container, Attempt: k.attempt})
	}
	now := jobs.Now()
	for k, at := range l.gone {
		if now.Sub(at) > leftKeep {
			delete(l.gone, k)
			continue
		}
		present = append(present, jobs.Touch{JobID: k.job, Sub: k.container, Attempt: k.attempt, At: at})
	}
	write := l.presence != nil && (len(present) > 0 || l.written != 0)
	left := make([]jobs.Touch, 0, len(l.left))
	for _, t := range l.left {
		left = append(left, t)
	}
	l.left = map[agentKey]jobs.Touch{}
	l.mu.Unlock()
	ctx := context.Background()
	if write {
		if err := l.presence.PutPresence(ctx, l.replica, now, present); err != nil {
			l.log.WarnContext(ctx, "record the connected agents", "agents", len(present), "error", err)
		} else {
			l.mu.Lock()
			l.written = len(present)
			l.mu.Unlock()
		}
	}
	if len(left) > 0 {
		if _, err := l.touch(ctx, left); err != nil {
			l.log.WarnContext(ctx, "record the last contact of agents that left", "agents", len(left), "error", err)
		}
	}
}

// freeze starts the shutdown: the sessions about to end stay listed, and the last write (close)
// records them all as heard from then, in a few writes rather than one per agent.
func (l *liveness) freeze() {
	l.mu.Lock()
	l.frozen = true
	l.mu.Unlock()
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
