package lease

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memStore is an in-memory Store for the unit tests; fail makes every call fail (the store
// unreachable).
type memStore struct {
	mu     sync.Mutex
	holder map[string]string
	until  map[string]time.Time
	fail   atomic.Bool
}

func newMemStore() *memStore {
	return &memStore{holder: map[string]string{}, until: map[string]time.Time{}}
}

var errDown = errors.New("store down")

func (m *memStore) AcquireLease(_ context.Context, name, holder string, now, until time.Time) (bool, error) {
	if m.fail.Load() {
		return false, errDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.holder[name]; ok && h != holder && now.Before(m.until[name]) {
		return false, nil
	}
	m.holder[name], m.until[name] = holder, until
	return true, nil
}

func (m *memStore) ReleaseLease(_ context.Context, name, holder string) error {
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
	a, b := New(cfg, st, "a", quiet), New(cfg, st, "b", quiet)
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
	l := New(cfg, st, "a", quiet)
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
	st.holder["work"], st.until["work"] = "dead", now.Add(400*time.Millisecond)
	var p loopProbe
	l := New(Config{TTL: 300 * time.Millisecond}, st, "b", quiet)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = l.Run(ctx, "work", p.loop("b")) }()
	waitFor(t, 5*time.Second, "b takes the expired lease", func() bool { return p.running.Load() == 1 })
	if time.Now().Before(now.Add(400 * time.Millisecond)) {
		t.Fatal("the lease was taken before it expired")
	}
}
