package lease

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kbase/cts/shared/logtest"
)

// memStore is an in-memory Store for the unit tests; fail makes every call fail (the store
// unreachable).
type memStore struct {
	mu     sync.Mutex
	holder map[string]Holder
	until  map[string]time.Time
	fail   atomic.Bool
}

func newMemStore() *memStore {
	return &memStore{holder: map[string]Holder{}, until: map[string]time.Time{}}
}

var errDown = errors.New("store down")

func (m *memStore) AcquireLease(_ context.Context, name string, holder Holder, now, until time.Time) (bool, error) {
	if m.fail.Load() {
		return false, errDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.holder[name]; ok && h != holder && !holder.Supersedes(h) && now.Before(m.until[name]) {
		return false, nil
	}
	m.holder[name], m.until[name] = holder, until
	return true, nil
}

func (m *memStore) LeaseHolder(_ context.Context, name string) (Holder, time.Time, error) {
	if m.fail.Load() {
		return Holder{}, time.Time{}, errDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holder[name], m.until[name], nil
}

func (m *memStore) ReleaseLease(_ context.Context, name string, holder Holder) error {
	if m.fail.Load() {
		return errDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holder[name] == holder {
		delete(m.holder, name)
		delete(m.until, name)
	}
	return nil
}

// loopProbe is a loop that records how many copies run at once and who runs.
type loopProbe struct {
	running atomic.Int32
	maxRun  atomic.Int32
	mu      sync.Mutex
	runs    []string
}

func (p *loopProbe) loop(who string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		n := p.running.Add(1)
		defer p.running.Add(-1)
		for {
			m := p.maxRun.Load()
			if n <= m || p.maxRun.CompareAndSwap(m, n) {
				break
			}
		}
		p.mu.Lock()
		p.runs = append(p.runs, who)
		p.mu.Unlock()
		<-ctx.Done()
		return nil
	}
}

func (p *loopProbe) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.runs) == 0 {
		return ""
	}
	return p.runs[len(p.runs)-1]
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var quiet = slog.New(slog.DiscardHandler)

// TestOneHolderAndHandover: two replicas share a lease; the loop runs on one at a time; when
// the holder shuts down it releases the lease and the other takes it.
func TestOneHolderAndHandover(t *testing.T) {
	st := newMemStore()
	cfg := Config{TTL: 300 * time.Millisecond}
	var p loopProbe
	a, b := New(cfg, st, Holder{"a", 1}, quiet), New(cfg, st, Holder{"b", 1}, quiet)
	ctxA, stopA := context.WithCancel(t.Context())
	ctxB, stopB := context.WithCancel(t.Context())
	defer stopB()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = a.Run(ctxA, "work", p.loop("a")) }()
	go func() { defer wg.Done(); _ = b.Run(ctxB, "work", p.loop("b")) }()
	waitFor(t, 5*time.Second, "a holder", func() bool { return p.running.Load() == 1 })
	first := p.last()
	time.Sleep(time.Second) // several renewals
	if p.maxRun.Load() != 1 || p.last() != first {
		t.Fatalf("loops at once: %d, runs %v: the holder changed or two ran", p.maxRun.Load(), p.runs)
	}
	if first == "a" {
		stopA()
	} else {
		stopB()
	}
	waitFor(t, 5*time.Second, "the other replica takes over", func() bool { return p.last() != first && p.running.Load() == 1 })
	if p.maxRun.Load() != 1 {
		t.Fatalf("%d loops ran at once", p.maxRun.Load())
	}
	stopA()
	stopB()
	wg.Wait()
}

// TestHolderCutOffStopsBeforeExpiry: a holder that can no longer reach the store stops its
// loop before the lease expires, so another replica never runs alongside it.
func TestHolderCutOffStopsBeforeExpiry(t *testing.T) {
	st := newMemStore()
	cfg := Config{TTL: 600 * time.Millisecond}
	l := New(cfg, st, Holder{"a", 1}, quiet)
	started, stopped := make(chan time.Time, 4), make(chan time.Time, 4)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		_ = l.Run(ctx, "work", func(ctx context.Context) error {
			started <- time.Now()
			<-ctx.Done()
			if !errors.Is(context.Cause(ctx), ErrLost) {
				t.Errorf("loop stopped with cause %v, want ErrLost", context.Cause(ctx))
			}
			stopped <- time.Now()
			return nil
		})
	}()
	<-started
	st.mu.Lock()
	expires := st.until["work"]
	st.mu.Unlock()
	st.fail.Store(true)
	select {
	case at := <-stopped:
		st.mu.Lock()
		expires = st.until["work"]
		st.mu.Unlock()
		if !at.Before(expires) {
			t.Fatalf("the loop stopped at %s, after its lease expired at %s", at.Format(time.StampMilli), expires.Format(time.StampMilli))
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the loop still runs 5 s after the store went away (lease expired %s)", expires.Format(time.StampMilli))
	}
	if l.Held("work") {
		t.Error("Held reports the lost lease")
	}
}

// TestExpiredLeaseTakenOver: a holder that died without releasing (no renewals, no release)
// loses its lease to another replica once it expired, not before.
func TestExpiredLeaseTakenOver(t *testing.T) {
	st := newMemStore()
	now := time.Now()
	st.holder["work"], st.until["work"] = Holder{"dead", 1}, now.Add(400*time.Millisecond)
	var p loopProbe
	l := New(Config{TTL: 300 * time.Millisecond}, st, Holder{"b", 1}, quiet)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = l.Run(ctx, "work", p.loop("b")) }()
	waitFor(t, 5*time.Second, "b takes the expired lease", func() bool { return p.running.Load() == 1 })
	if time.Now().Before(now.Add(400 * time.Millisecond)) {
		t.Fatal("the lease was taken before it expired")
	}
}

// TestRestartTakesOverItsOwnLeases: a replica's new process (a later incarnation of its name)
// takes at once the leases its earlier process held, with an hour left on them; a lease held
// by another name it does not take before it expires.
func TestRestartTakesOverItsOwnLeases(t *testing.T) {
	st := newMemStore()
	far := time.Now().Add(time.Hour)
	st.holder["mine"], st.until["mine"] = Holder{"a", 1}, far
	st.holder["theirs"], st.until["theirs"] = Holder{"b", 1}, far
	var mine, theirs loopProbe
	l := New(Config{TTL: time.Hour}, st, Holder{"a", 2}, quiet)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = l.Run(ctx, "mine", mine.loop("a2")) }()
	go func() { _ = l.Run(ctx, "theirs", theirs.loop("a2")) }()
	waitFor(t, 10*time.Second, "the restarted replica runs the loop its earlier process held", func() bool { return mine.running.Load() == 1 })
	if !l.Held("mine") {
		t.Error("Held does not report the lease taken over")
	}
	if theirs.running.Load() != 0 {
		t.Fatal("the restarted replica took an unexpired lease of another replica")
	}
}

// TestSharedNameLaterProcessWins: two live processes share a replica name (a misconfiguration).
// The later one takes the earlier one's lease at once; the earlier stops its loop at its next
// renewal (ErrLost), logs the shared name as an error, and does not take the lease back.
func TestSharedNameLaterProcessWins(t *testing.T) {
	st := newMemStore()
	cfg := Config{TTL: 600 * time.Millisecond}
	var logs logtest.Recorder
	early := New(cfg, st, Holder{"a", 1}, logs.Logger())
	late := New(cfg, st, Holder{"a", 2}, quiet)
	var p loopProbe
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var causes sync.Map
	go func() {
		_ = early.Run(ctx, "work", func(ctx context.Context) error {
			err := p.loop("early")(ctx)
			causes.Store("early", context.Cause(ctx))
			return err
		})
	}()
	waitFor(t, 5*time.Second, "the early process holds the lease", func() bool { return p.last() == "early" })
	go func() { _ = late.Run(ctx, "work", p.loop("late")) }()
	waitFor(t, 5*time.Second, "the later process takes it", func() bool { return p.last() == "late" })
	waitFor(t, 5*time.Second, "the early process stops its loop", func() bool { return p.running.Load() == 1 })
	if c, _ := causes.Load("early"); !errors.Is(c.(error), ErrLost) {
		t.Errorf("the early loop stopped with cause %v, want ErrLost", c)
	}
	if errs := strings.Join(logs.Records(slog.LevelError), "\n"); !strings.Contains(errs, `two live replicas share the name "a"`) {
		t.Errorf("the early process did not log the shared name at ERROR; its errors:\n%s", errs)
	}
	time.Sleep(3 * cfg.TTL) // several of the early process's tries
	if p.last() != "late" || p.running.Load() != 1 || !late.Held("work") {
		t.Fatalf("the early process took the lease back: runs %v", p.runs)
	}
}
