// Package poll runs a replica's periodic poll of the store it shares with the other replicas
// (the stop signals, the live data of the agents): a poll every interval until the context
// ends, its failures logged once when they start, and once when polls work again, rather than
// at every tick, and a prune of old records about once a minute.
//
// It owns the timing and the logging of the loop, nothing of what is polled or pruned.
package poll

import (
	"context"
	"log/slog"
	"time"
)

// PruneEvery is how often a Loop prunes.
const PruneEvery = time.Minute

// Loop is one periodic poll.
type Loop struct {
	// Interval is the time between two polls (required).
	Interval time.Duration
	// Poll is called every Interval (required).
	Poll func(ctx context.Context) error
	// Prune, when set, is called after a poll once PruneEvery has passed since the loop
	// started or last pruned.
	Prune func(ctx context.Context) error
	// Log receives the messages below (required).
	Log *slog.Logger
	// Failing is logged at WARN, with the error, when a poll fails and the one before did not
	// (or it is the first). Recovered, when set, is logged at INFO when a poll works after
	// failures. PruneFailed is logged at WARN, with the error, when a prune fails. Nothing is
	// logged of a failure once ctx has ended.
	Failing, Recovered, PruneFailed string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Run polls every Interval until ctx ends, and returns nil.
func (l Loop) Run(ctx context.Context) error {
	now := l.Now
	if now == nil {
		now = time.Now
	}
	t := time.NewTicker(l.Interval)
	defer t.Stop()
	lastPrune := now()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := l.Poll(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			l.Log.WarnContext(ctx, l.Failing, "error", err)
		case err == nil && failing:
			failing = false
			if l.Recovered != "" {
				l.Log.InfoContext(ctx, l.Recovered)
			}
		}
		if l.Prune == nil {
			continue
		}
		if n := now(); n.Sub(lastPrune) > PruneEvery {
			lastPrune = n
			if err := l.Prune(ctx); err != nil && ctx.Err() == nil {
				l.Log.WarnContext(ctx, l.PruneFailed, "error", err)
			}
		}
	}
}
