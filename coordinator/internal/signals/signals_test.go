package signals

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kbase/cts/shared/protocol"
)

// memStore is an in-memory Store shared by the buses of a test (two "replicas").
type memStore struct {
	mu    sync.Mutex
	sigs  map[string]Signal
	polls int
}

func newMemStore() *memStore { return &memStore{sigs: map[string]Signal{}} }

func (m *memStore) PublishSignal(_ context.Context, s Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sigs[s.ID]; !ok {
		m.sigs[s.ID] = s
	}
	return nil
}

func (m *memStore) RenewSignal(_ context.Context, s Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sigs[s.ID] = s
	return nil
}

func (m *memStore) SignalsSince(_ context.Context, since time.Time) ([]Signal, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.polls++
	var out []Signal
	for _, s := range m.sigs {
		if !s.At.Before(since) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (m *memStore) PruneSignals(_ context.Context, before time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, s := range m.sigs {
		if s.At.Before(before) {
			delete(m.sigs, id)
		}
	}
	return nil
}

// recorder collects deliveries.
type recorder struct {
	mu  sync.Mutex
	got []protocol.Cancel
	at  []time.Time
	ch  chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 16)} }

func (r *recorder) deliver(c protocol.Cancel) {
	r.mu.Lock()
	r.got = append(r.got, c)
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) wait(t *testing.T, within time.Duration, what string) {
	t.Helper()
	select {
	case <-r.ch:
	case <-time.After(within):
		t.Fatalf("%s: nothing delivered within %s", what, within)
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func TestStopReachesTheOtherReplica(t *testing.T) {
	st := newMemStore()
	a := New(Config{Interval: 20 * time.Millisecond}, st, "a", nil)
	b := New(Config{Interval: 20 * time.Millisecond}, st, "b", nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = a.Run(ctx) }()
	go func() { _ = b.Run(ctx) }()

	onA, onB, other := newRecorder(), newRecorder(), newRecorder()
	defer a.Watch("job1", onA.deliver)()
	defer b.Watch("job1", onB.deliver)()
	defer b.Watch("job2", other.deliver)()
	if err := a.Publish(ctx, "job1", "the job was canceled"); err != nil {
		t.Fatal(err)
	}
	onA.wait(t, time.Second, "the publishing replica's session")
	onB.wait(t, 5*time.Second, "the other replica's session")
	if onB.got[0].Reason != "the job was canceled" {
		t.Errorf("reason %q", onB.got[0].Reason)
	}
	// Published again (the durable path after the fast one): nobody is told twice.
	if err := b.Publish(ctx, "job1", "again"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if onA.count() != 1 || onB.count() != 1 || other.count() != 0 {
		t.Fatalf("deliveries: A %d, B %d, other job %d; want 1, 1, 0", onA.count(), onB.count(), other.count())
	}
	// A session that connects after the signal (an agent reconnecting) is told at once.
	late := newRecorder()
	defer b.Watch("job1", late.deliver)()
	late.wait(t, time.Second, "a late session")
	if b.Watching() != 1 {
		t.Errorf("B watches %d sessions, want 1 (job2)", b.Watching())
	}
}

func TestUnwatchedSessionIsNotTold(t *testing.T) {
	b := New(Config{}, nil, "a", nil)
	r := newRecorder()
	unwatch := b.Watch("job1", r.deliver)
	unwatch()
	if err := b.Publish(t.Context(), "job1", "x"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if r.count() != 0 {
		t.Fatal("a session that stopped watching was told")
	}
}

func TestPollsAreOnePerInterval(t *testing.T) {
	st := newMemStore()
	b := New(Config{Interval: 50 * time.Millisecond}, st, "a", nil)
	for i := range 1000 { // many sessions cost no more queries
		defer b.Watch("job"+string(rune('a'+i%26)), func(protocol.Cancel) {})()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 520*time.Millisecond)
	defer cancel()
	_ = b.Run(ctx)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.polls > 11 {
		t.Fatalf("%d polls in 0.52 s at a 50 ms interval with 1000 sessions", st.polls)
	}
}

// TestPokes: a poke on one replica wakes the other's subscribers, not its own; pokes in a burst
// are written once per interval.
func TestPokes(t *testing.T) {
	st := newMemStore()
	a := New(Config{Interval: 50 * time.Millisecond}, st, "a", nil)
	b := New(Config{Interval: 50 * time.Millisecond}, st, "b", nil)
	var wokeA, wokeB atomicCounter
	a.OnPoke("submitter", wokeA.add)
	b.OnPoke("submitter", wokeB.add)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = a.Run(ctx) }()
	go func() { _ = b.Run(ctx) }()
	for range 100 {
		a.Poke("submitter")
	}
	deadline := time.Now().Add(5 * time.Second)
	for wokeB.get() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if wokeB.get() < 1 || wokeB.get() > 2 {
		t.Fatalf("b woken %d times by a burst of 100 pokes, want 1 or 2", wokeB.get())
	}
	if wokeA.get() != 0 {
		t.Fatalf("a woken %d times by its own pokes", wokeA.get())
	}
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *atomicCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// versionedStore is a memStore that numbers its writes (Versioned); skipBump makes the next
// write leave the version as it was (a publisher that stopped between its two writes).
type versionedStore struct {
	*memStore
	version  int64
	skipBump bool
}

func (v *versionedStore) bump() {
	if v.skipBump {
		v.skipBump = false
		return
	}
	v.version++
}

func (v *versionedStore) PublishSignal(ctx context.Context, s Signal) error {
	v.mu.Lock()
	_, had := v.sigs[s.ID]
	v.mu.Unlock()
	if err := v.memStore.PublishSignal(ctx, s); err != nil {
		return err
	}
	if !had {
		v.mu.Lock()
		v.bump()
		v.mu.Unlock()
	}
	return nil
}

func (v *versionedStore) RenewSignal(ctx context.Context, s Signal) error {
	if err := v.memStore.RenewSignal(ctx, s); err != nil {
		return err
	}
	v.mu.Lock()
	v.bump()
	v.mu.Unlock()
	return nil
}

func (v *versionedStore) SignalsVersion(context.Context) (int64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.version, nil
}

// TestPollReadsOnlyWhenSomethingWasPublished: over a Versioned store, a poll reads the signals
// when the version moved and at least every Window/4, and otherwise reads nothing more; what
// another replica publishes is delivered by the next poll, and a signal whose version move was
// lost by the next full read.
func TestPollReadsOnlyWhenSomethingWasPublished(t *testing.T) {
	st := &versionedStore{memStore: newMemStore()}
	now := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := New(Config{Window: 2 * time.Minute}, st, "a", nil)
	b := New(Config{Window: 2 * time.Minute}, st, "b", nil)
	a.now, b.now = clock, clock
	ctx := t.Context()
	polls := func() int {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.polls
	}
	poll := func(wantReads int, what string) {
		t.Helper()
		before := polls()
		if err := b.Poll(ctx); err != nil {
			t.Fatal(err)
		}
		if got := polls() - before; got != wantReads {
			t.Fatalf("%s: the poll read the signals %d times, want %d", what, got, wantReads)
		}
	}
	poll(1, "first poll")
	for range 10 {
		now = now.Add(500 * time.Millisecond)
		poll(0, "nothing published")
	}
	r := newRecorder()
	defer b.Watch("job1", r.deliver)()
	if err := a.Publish(ctx, "job1", "canceled"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(500 * time.Millisecond)
	poll(1, "a stop published")
	r.wait(t, time.Second, "the other replica's session")
	now = now.Add(500 * time.Millisecond)
	poll(0, "nothing published since")

	// A publisher that stopped after its signal, before the version moved: the next full
	// read, within a quarter of the window, delivers it.
	st.skipBump = true
	late := newRecorder()
	defer b.Watch("job2", late.deliver)()
	if err := a.Publish(ctx, "job2", "canceled"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(500 * time.Millisecond)
	poll(0, "a stop whose version did not move")
	now = now.Add(30 * time.Second)
	poll(1, "a quarter of the window after the last read")
	late.wait(t, time.Second, "the signal whose version did not move")
}
