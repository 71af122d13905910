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
