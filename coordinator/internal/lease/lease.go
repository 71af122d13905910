// Package lease lets several coordinator replicas share periodic work so that each piece of it
// runs on one replica at a time: a lease is a named record in the shared store (MongoDB) that
// one replica holds until a time; the holder renews it well before then, and when the holder
// dies or cannot reach the store, another replica takes it once it has expired.
//
//	replica A: acquire ──► run the loop ──► renew, renew, ... ──► (dies)
//	replica B: acquire? held by A ... acquire? held by A ... acquire? expired ──► run the loop
//
// A holder stops its loop (cancels the loop's context) as soon as a renewal has not succeeded
// for Margin less than the TTL, by its own clock, so that it has stopped before another
// replica can take the lease: the clocks of the replicas may differ by less than Margin. On a
// clean shutdown the holder releases the lease, and another replica takes it at its next try.
//
// A holder is a replica's name and its incarnation. The name is stable: a coordinator that is
// restarted (after a crash, a SIGKILL) keeps it, and its new process, a later incarnation,
// takes over at once the leases its name held in an earlier incarnation, instead of waiting
// for them to expire: that process is gone, and no other replica can hold them meanwhile.
// Only those: a lease held by another name, or by a later incarnation of its own, it takes
// only once expired. Two live replicas must never share a name: the later one would take the
// earlier one's leases while the earlier still runs their loops, until its next renewal finds
// them lost (for up to Renew both run a loop at once); the one that loses them so logs it as
// an error naming the shared name.
//
// It owns the acquire/renew/release protocol and nothing about the work itself; it must not
// run two loops of one lease on one replica.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// Holder names the process holding a lease: the replica's stable name and the incarnation of
// that name the process is (later processes of one name have greater incarnations).
type Holder struct {
	Name        string
	Incarnation int64
}

// String is how logs show the holder: "<name>#<incarnation>".
func (h Holder) String() string { return h.Name + "#" + strconv.FormatInt(h.Incarnation, 10) }

// Supersedes reports whether h is a later incarnation of o's replica.
func (h Holder) Supersedes(o Holder) bool { return h.Name == o.Name && h.Incarnation > o.Incarnation }

// Store keeps the leases. Acquire and Release are single conditional writes, atomic per lease.
type Store interface {
	// AcquireLease gives lease name to holder until until, if nobody holds it, holder holds it
	// already (a renewal), an earlier incarnation of holder's name holds it (holder
	// Supersedes it), or it expired before now. It reports whether holder holds the lease
	// after the call.
	AcquireLease(ctx context.Context, name string, holder Holder, now, until time.Time) (bool, error)
	// ReleaseLease ends holder's lease name (nothing if another holds it).
	ReleaseLease(ctx context.Context, name string, holder Holder) error
	// LeaseHolder returns the holder of lease name and until when (zero when nobody does).
	LeaseHolder(ctx context.Context, name string) (Holder, time.Time, error)
}

// Config tunes the leases. Zero fields take the defaults.
type Config struct {
	// TTL is how long a lease lasts without renewal (default 15 s): after a holder dies, its
	// work stops for up to TTL.
	TTL time.Duration
	// Renew is how often the holder renews, and how often others try to acquire (default
	// TTL/3).
	Renew time.Duration
	// Margin is how long before the TTL ends a holder that could not renew stops its loop
	// (default TTL/3): it bounds the clock difference between replicas the leases tolerate.
	Margin time.Duration
}

func (c Config) withDefaults() Config {
	if c.TTL <= 0 {
		c.TTL = 15 * time.Second
	}
	if c.Renew <= 0 {
		c.Renew = c.TTL / 3
	}
	if c.Margin <= 0 || c.Margin >= c.TTL {
		c.Margin = c.TTL / 3
	}
	return c
}

// Leases runs loops under leases for one replica (Holder).
type Leases struct {
	cfg    Config
	store  Store
	holder Holder
	log    *slog.Logger
	now    func() time.Time

	mu   sync.Mutex
	held map[string]bool
}

// New returns the leases of holder: this process, the latest incarnation of its replica's name.
func New(cfg Config, store Store, holder Holder, log *slog.Logger) *Leases {
	return &Leases{cfg: cfg.withDefaults(), store: store, holder: holder, log: log, now: time.Now, held: map[string]bool{}}
}

// Holder is this process's holder.
func (l *Leases) Holder() Holder { return l.holder }

// Held reports whether this replica holds lease name now (for metrics and /readyz details).
func (l *Leases) Held(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[name]
}

func (l *Leases) setHeld(name string, v bool) {
	l.mu.Lock()
	l.held[name] = v
	l.mu.Unlock()
}

// Run runs loop while this replica holds lease name, until ctx ends: it tries to acquire the
// lease every Renew (with jitter); once acquired it starts loop with a context that is
// canceled when the lease is lost (or ctx ends), and waits for loop to return before trying
// again. A loop that returns an error is logged and started again at the next acquisition.
// Run releases the lease when ctx ends and returns nil.
func (l *Leases) Run(ctx context.Context, name string, loop func(ctx context.Context) error) error {
	for ctx.Err() == nil {
		got, err := l.acquire(ctx, name)
		if err != nil && ctx.Err() == nil {
			l.log.WarnContext(ctx, "lease: acquire failed", "lease", name, "error", err)
		}
		if !got {
			l.sleep(ctx, l.cfg.Renew/2+jitter(l.cfg.Renew))
			continue
		}
		l.log.InfoContext(ctx, "lease acquired", "lease", name, "holder", l.holder.String())
		l.hold(ctx, name, loop)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := l.store.ReleaseLease(rctx, name, l.holder); err != nil {
		l.log.WarnContext(rctx, "lease: release failed (another replica takes it once it expires)", "lease", name, "error", err)
	}
	return nil
}

// acquire tries once; it returns whether the lease is held until now+TTL.
func (l *Leases) acquire(ctx context.Context, name string) (bool, error) {
	now := l.now()
	actx, cancel := context.WithTimeout(ctx, l.cfg.Renew)
	defer cancel()
	got, err := l.store.AcquireLease(actx, name, l.holder, now, now.Add(l.cfg.TTL))
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	return got, nil
}

// hold runs loop while the lease is renewed, and returns once loop has returned after the
// lease was lost or ctx ended.
func (l *Leases) hold(ctx context.Context, name string, loop func(ctx context.Context) error) {
	lctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	l.setHeld(name, true)
	defer l.setHeld(name, false)
	done := make(chan error, 1)
	go func() { done <- loop(lctx) }()
	renewed := l.now()
	t := time.NewTicker(l.cfg.Renew)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				l.log.ErrorContext(ctx, "lease: loop failed; it starts again at the next acquisition", "lease", name, "error", err)
			}
			if ctx.Err() == nil {
				// The loop ended by itself: give the lease up, someone (maybe us) runs it again.
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_ = l.store.ReleaseLease(rctx, name, l.holder)
				cancel()
			}
			return
		case <-ctx.Done():
			stop(nil)
			<-done
			return
		case <-t.C:
		}
		got, err := l.acquire(ctx, name)
		switch {
		case err == nil && got:
			renewed = l.now()
			continue
		case err == nil:
			l.lost(ctx, name)
		case l.now().Sub(renewed) < l.cfg.TTL-l.cfg.Margin:
			l.log.WarnContext(ctx, "lease: renewal failed; retrying", "lease", name, "error", err)
			continue
		default:
			l.log.ErrorContext(ctx, "lease: not renewed in time: stopping its work", "lease", name, "error", err)
		}
		l.setHeld(name, false) // before the loop sees its context end
		stop(ErrLost)
		<-done
		return
	}
}

// lost logs a lease taken by another holder while this one held it: by another replica, or,
// when two live processes share this replica's name, by the later one.
func (l *Leases) lost(ctx context.Context, name string) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h, _, err := l.store.LeaseHolder(rctx, name)
	if err == nil && h.Supersedes(l.holder) {
		l.log.ErrorContext(ctx, "lease taken by another coordinator process with this replica's name: "+
			"two live replicas share the name "+strconv.Quote(l.holder.Name)+" (replicas.name); give each its own. "+
			"This process stops the lease's work, which the other runs", "lease", name, "holder", l.holder.String(), "by", h.String())
		return
	}
	l.log.WarnContext(ctx, "lease lost to another replica: stopping its work", "lease", name, "by", h.String())
}

func (l *Leases) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// ErrLost is the cause (context.Cause) of a loop's context canceled because the lease was lost.
var ErrLost = errors.New("lease lost")
