// Package signals carries what one coordinator replica must tell the others: "the agents of
// job J must stop" (the job was canceled, or the reconciler ended it: an agent's websocket may
// land on any replica), and "there is work for the submitter" or "for the notifier" (a poke:
// the replica holding that work's lease runs it now instead of at its next tick). Replicas
// share nothing but the store, so a signal goes through it:
//
//	replica A: Publish(J) ──► store: signals {_id: "stop/J", job: J, at} ──► A's sessions of J
//	replica B: every Interval, one query for the signals of the last Window ──► B's sessions of J
//
// The poll costs one query per replica per Interval on a collection that holds only the
// signals of the last two Windows, whatever the number of agents, so a cancel reaches an agent
// on another replica within about Interval. A store that numbers its writes (Versioned) makes
// a poll of a site where nothing was published one point read: the bus reads the signals only
// when the number moved, and at least every Window/4. On a server that decodes every document
// of a collection for any query but one by _id (the embedded FerretDB), the query decodes
// every signal kept, so without the version a site at rest would pay for its last burst of
// cancels on every poll. Each replica delivers each signal
// once; a session that connects later (an agent reconnecting during the cancel) gets the
// job's signal when it starts watching. Without a store (tests, a single process) the bus
// delivers locally only.
//
// A poke is a document per name ("poke/submitter") whose time each poke moves forward, at most
// once per Interval per replica; the replicas that subscribed to the name are woken when they
// see it move (not the one that poked: it woke its own loop itself).
//
// It owns the signal records and their delivery, not what a signal means: package launch
// publishes stops, package agentws delivers them to its sessions, app wires the pokes.
package signals

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kbase/cts/coordinator/internal/poll"
	"github.com/kbase/cts/shared/protocol"
)

// Signal is one stop signal or poke.
type Signal struct {
	// ID names the signal: one per job ("stop/<job id>"), so publishing twice is harmless; one
	// per poked loop ("poke/<name>").
	ID     string    `bson:"_id"`
	JobID  string    `bson:"job,omitempty"`
	Reason string    `bson:"reason,omitempty"`
	At     time.Time `bson:"at"`
	// By is the replica that poked (pokes only).
	By string `bson:"by,omitempty"`
}

// Store keeps the signals.
type Store interface {
	// PublishSignal records s unless a signal with its ID exists (then nothing changes).
	PublishSignal(ctx context.Context, s Signal) error
	// RenewSignal records s, replacing the signal with its ID if there is one.
	RenewSignal(ctx context.Context, s Signal) error
	// SignalsSince returns the signals whose At is at or after since.
	SignalsSince(ctx context.Context, since time.Time) ([]Signal, error)
	// PruneSignals deletes the signals whose At is before before.
	PruneSignals(ctx context.Context, before time.Time) error
}

// Config tunes the bus. Zero fields take the defaults.
type Config struct {
	// Interval is the time between two polls of the store (default 500 ms).
	Interval time.Duration
	// Window is how far back a poll looks (default 2 min): it must exceed the time between a
	// signal's At and its write, and the replicas' clock differences.
	Window time.Duration
	// Retention is how long a replica remembers the signals delivered to it, for sessions
	// that connect late (default 15 min). The store keeps them for two Windows: no poll looks
	// further back (with the replicas' clocks up to a Window apart).
	Retention time.Duration
}

// Versioned is a Store that tells cheaply whether anything was recorded: SignalsVersion
// changes after every PublishSignal or RenewSignal that recorded something. A write that
// failed, or a writer that stopped, between a signal and the version's move is caught by the
// bus's full read at least every Window/4.
type Versioned interface {
	// SignalsVersion returns the store's signal version (0 before any signal).
	SignalsVersion(ctx context.Context) (int64, error)
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = 500 * time.Millisecond
	}
	if c.Window <= 0 {
		c.Window = 2 * time.Minute
	}
	if c.Retention < c.Window {
		c.Retention = max(15*time.Minute, c.Window)
	}
	return c
}

// Bus publishes and delivers stop signals and pokes. It is safe for concurrent use.
type Bus struct {
	cfg   Config
	store Store // nil: local delivery only
	self  string
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	seen     map[string]Signal // delivered here, by ID, kept for Retention
	byJob    map[string]Signal
	watchers map[string]map[*watcher]struct{}
	onPoke   map[string][]func()
	pokes    map[string]*poke
	// read is what the last full read of the store saw (Versioned stores only).
	read lastRead
}

// lastRead is the store's signal version when the bus last read the signals, and when.
type lastRead struct {
	ok      bool
	version int64
	at      time.Time
}

// poke is the state of one poked name on this replica.
type poke struct {
	seen    time.Time // the latest poke time delivered here
	sent    time.Time // when this replica last wrote a poke
	pending bool      // a trailing write is scheduled
}

type watcher struct {
	deliver func(protocol.Cancel)
	once    sync.Once
}

// New returns a bus over store (nil: this process only). self names this replica.
func New(cfg Config, store Store, self string, log *slog.Logger) *Bus {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bus{cfg: cfg.withDefaults(), store: store, self: self, log: log, now: time.Now,
		seen: map[string]Signal{}, byJob: map[string]Signal{}, watchers: map[string]map[*watcher]struct{}{},
		onPoke: map[string][]func(){}, pokes: map[string]*poke{}}
}

// OnPoke calls wake (on its own goroutine) whenever another replica pokes name. Call it before
// Run.
func (b *Bus) OnPoke(name string, wake func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onPoke[name] = append(b.onPoke[name], wake)
}

// Poke tells the other replicas that name has work (they run their OnPoke functions for it).
// It never blocks: the write happens on its own goroutine, at most once per Interval, the
// pokes in between folded into one written at the end of it.
func (b *Bus) Poke(name string) {
	if b.store == nil {
		return
	}
	b.mu.Lock()
	p := b.pokes[name]
	if p == nil {
		p = &poke{}
		b.pokes[name] = p
	}
	if p.pending {
		b.mu.Unlock()
		return
	}
	p.pending = true
	wait := max(0, p.sent.Add(b.cfg.Interval).Sub(b.now()))
	b.mu.Unlock()
	time.AfterFunc(wait, func() {
		b.mu.Lock()
		p.pending = false
		p.sent = b.now()
		at := p.sent.UTC().Truncate(time.Millisecond)
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.store.RenewSignal(ctx, Signal{ID: "poke/" + name, At: at, By: b.self}); err != nil {
			b.log.Warn("poke the other replicas failed; they find the work at their next tick", "name", name, "error", err)
		}
	})
}

// Publish tells every replica's sessions of job jobID to stop: it records the signal in the
// store (when the bus has one) and delivers it to this replica's sessions at once. Publishing
// again for the same job changes nothing.
func (b *Bus) Publish(ctx context.Context, jobID, reason string) error {
	s := Signal{ID: "stop/" + jobID, JobID: jobID, Reason: reason, At: b.now().UTC().Truncate(time.Millisecond)}
	var err error
	if b.store != nil {
		if err = b.store.PublishSignal(ctx, s); err != nil {
			err = fmt.Errorf("publish stop signal of job %s: %w", jobID, err)
		}
	}
	b.deliver(s) // the local sessions do not wait for the store
	return err
}

// Watch calls deliver once, on its own goroutine, when job jobID's agents must stop: at once if
// a signal for it was delivered here within Retention, else when one arrives. unwatch stops
// the watch (deliver is not called after it returns, unless already started).
func (b *Bus) Watch(jobID string, deliver func(protocol.Cancel)) (unwatch func()) {
	w := &watcher{deliver: deliver}
	b.mu.Lock()
	s, signaled := b.byJob[jobID]
	if !signaled {
		ws := b.watchers[jobID]
		if ws == nil {
			ws = map[*watcher]struct{}{}
			b.watchers[jobID] = ws
		}
		ws[w] = struct{}{}
	}
	b.mu.Unlock()
	if signaled {
		w.fire(s)
		return func() {}
	}
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if ws := b.watchers[jobID]; ws != nil {
			delete(ws, w)
			if len(ws) == 0 {
				delete(b.watchers, jobID)
			}
		}
	}
}

func (w *watcher) fire(s Signal) {
	w.once.Do(func() { go w.deliver(protocol.Cancel{Reason: s.Reason}) })
}

// Watching is the number of watches (agent sessions) waiting for a signal.
func (b *Bus) Watching() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, ws := range b.watchers {
		n += len(ws)
	}
	return n
}

// deliver hands s to this replica's watchers of its job, once per signal, or, for a poke,
// wakes the subscribers of its name when it moved forward.
func (b *Bus) deliver(s Signal) {
	if name, ok := strings.CutPrefix(s.ID, "poke/"); ok {
		b.deliverPoke(name, s)
		return
	}
	b.mu.Lock()
	if _, ok := b.seen[s.ID]; ok {
		b.mu.Unlock()
		return
	}
	b.seen[s.ID] = s
	b.byJob[s.JobID] = s
	ws := b.watchers[s.JobID]
	delete(b.watchers, s.JobID)
	b.mu.Unlock()
	for w := range ws {
		w.fire(s)
	}
}

func (b *Bus) deliverPoke(name string, s Signal) {
	b.mu.Lock()
	p := b.pokes[name]
	if p == nil {
		p = &poke{}
		b.pokes[name] = p
	}
	fresh := s.At.After(p.seen)
	if fresh {
		p.seen = s.At
	}
	wake := b.onPoke[name]
	b.mu.Unlock()
	if !fresh || s.By == b.self {
		return
	}
	for _, f := range wake {
		go f()
	}
}

// Run polls the store every Interval and delivers the signals other replicas published, and
// prunes old signals about once a minute, until ctx ends. Without a store it only waits.
func (b *Bus) Run(ctx context.Context) error {
	if b.store == nil {
		<-ctx.Done()
		return nil
	}
	return poll.Loop{Interval: b.cfg.Interval, Poll: b.Poll, Prune: b.prune, Log: b.log, Now: b.now,
		Failing:     "stop signals: poll failed; cancels reach only this replica's agents until it works again",
		Recovered:   "stop signals: polling again",
		PruneFailed: "stop signals: prune failed",
	}.Run(ctx)
}

// prune forgets here the signals older than Retention, and deletes from the store those older
// than two Windows (no poll reads them).
func (b *Bus) prune(ctx context.Context) error {
	now := b.now()
	b.forget(now.Add(-b.cfg.Retention))
	return b.store.PruneSignals(ctx, now.Add(-2*b.cfg.Window))
}

// Poll reads the recent signals once and delivers the new ones. Over a Versioned store it
// first reads the version, and reads the signals only when the version moved since its last
// read, or that read is Window/4 old.
func (b *Bus) Poll(ctx context.Context) error {
	if b.store == nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, max(b.cfg.Interval*4, 2*time.Second))
	defer cancel()
	now := b.now()
	var read lastRead
	if vs, ok := b.store.(Versioned); ok {
		v, err := vs.SignalsVersion(pctx)
		if err == nil { // else read the signals all the same
			b.mu.Lock()
			last := b.read
			b.mu.Unlock()
			if last.ok && last.version == v && now.Sub(last.at) < b.cfg.Window/4 {
				return nil
			}
			read = lastRead{ok: true, version: v, at: now}
		}
	}
	ss, err := b.store.SignalsSince(pctx, now.Add(-b.cfg.Window))
	if err != nil {
		return fmt.Errorf("read stop signals: %w", err)
	}
	for _, s := range ss {
		b.deliver(s)
	}
	b.mu.Lock()
	b.read = read
	b.mu.Unlock()
	return nil
}

// forget drops what was delivered before before.
func (b *Bus) forget(before time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, s := range b.seen {
		if s.At.Before(before) {
			delete(b.seen, id)
			if b.byJob[s.JobID].ID == id {
				delete(b.byJob, s.JobID)
			}
		}
	}
}
