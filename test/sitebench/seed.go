package sitebench

import (
	"context"
	"fmt"
	"time"
)

// Seed gives the site a history of n finished jobs, written through the job store
// (devmode.Env.SeedFinishedJobs): copies of the finished job template, ended before the
// reconciler's accounting window so that no periodic pass has anything left to do for them.
func (s *Site) Seed(ctx context.Context, template string, n int) error {
	if err := s.Env.SeedFinishedJobs(ctx, template, n, time.Now().Add(-2*time.Hour)); err != nil {
		return fmt.Errorf("seed %d finished jobs: %w", n, err)
	}
	return nil
}

// SeedCanceled gives the site n jobs canceled in a burst just now, written through the job
// store (devmode.Env.SeedCanceledJobs): done with (notified, accounted), waiting for the
// cleaner, their stop signals recorded, as a burst of cancels leaves a site once its work is
// done, without running n agents.
func (s *Site) SeedCanceled(ctx context.Context, template string, n int) error {
	if err := s.Env.SeedCanceledJobs(ctx, template, n); err != nil {
		return fmt.Errorf("seed %d canceled jobs: %w", n, err)
	}
	return nil
}
