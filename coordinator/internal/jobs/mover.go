package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/kbase/cts/shared/job"
)

// Notifier is told that new transitions wait in the outbox (the Kafka notifier).
type Notifier interface{ Poke() }

// Mover writes job transitions: one conditional update that appends the transition with a new
// trans_id and notif_sent false (the outbox), a log line, and a poke of the notifier. Every
// job transition of the lifecycle packages goes through a Mover, so a decorator of its store
// sees them all (the metrics do). It is safe for concurrent use.
type Mover struct {
	store  TransitionStore
	notify Notifier
	log    *slog.Logger
}

// NewMover returns a Mover.
func NewMover(store TransitionStore, notify Notifier, log *slog.Logger) *Mover {
	return &Mover{store: store, notify: notify, log: log}
}

// Move moves job id to state to from any state that may precede it (job.Predecessors). A zero
// at means now. It returns the job after the update, ErrNotFound or ErrConflict.
func (m *Mover) Move(ctx context.Context, id string, to job.State, at time.Time, u JobUpdate) (*Job, error) {
	return m.MoveFrom(ctx, id, job.Predecessors(to), to, at, u)
}

// MoveFrom moves job id to state to if it is in one of the states from.
func (m *Mover) MoveFrom(ctx context.Context, id string, from []job.State, to job.State, at time.Time, u JobUpdate) (*Job, error) {
	if at.IsZero() {
		at = Now()
	}
	j, err := m.store.TransitionJob(ctx, id, from, Transition{State: to, Time: at.UTC().Truncate(time.Millisecond), TransID: uuid.NewString()}, u)
	if err != nil {
		return nil, err
	}
	m.log.InfoContext(ctx, "job transition", "job_id", id, "state", to)
	m.notify.Poke()
	return j, nil
}
