package launch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/launcher"
)

// cleaner is the optional Cleanup capability of a site's launcher.
type cleaner interface {
	Cleanup(ctx context.Context, ref launcher.JobRef) error
}

// Clean removes what the job left at its site (the launcher's Cleanup capability, when it has
// one) and marks a terminal job cleaned (DELETE /admin/jobs/{id}/clean). A cleaned job is left
// alone. A job that has not ended is refused with 30300 unless force; a forced clean of a live
// job does not mark it cleaned.
func (s *Service) Clean(ctx context.Context, id string, force bool) error {
	j, err := s.store.GetJob(ctx, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' exists", id)
	}
	if err != nil {
		return err
	}
	if j.Cleaned {
		return nil
	}
	if !j.State.Terminal() && !force {
		return ctserr.New(ctserr.CodeInvalidJobState, "Job is not in a terminal state and cannot be cleaned")
	}
	if j.Launch != nil {
		if l, ok := s.SiteLauncher(j.Launch.Site); ok {
			if c, ok := l.(cleaner); ok {
				err := c.Cleanup(ctx, launcher.JobRef{JobID: j.ID, Handle: j.Launch.Handle})
				switch {
				case err == nil, errors.Is(err, launcher.ErrNotFound), errors.Is(err, errors.ErrUnsupported):
				case errors.Is(err, launcher.ErrConflict):
					return ctserr.New(ctserr.CodeInvalidJobState, "The site still runs containers of job %s: %s", j.ID, err)
				default:
					return fmt.Errorf("clean job %s: %w", j.ID, err)
				}
			}
		}
	}
	if !j.State.Terminal() {
		return nil
	}
	err = s.store.SetCleaned(ctx, j.ID)
	if errors.Is(err, jobs.ErrConflict) {
		return nil // raced with another cleaner
	}
	return err
}

// CleanerConfig configures RunCleaner.
type CleanerConfig struct {
	// Interval is the time between passes; Jitter a random extra delay up to it, so that
	// several coordinators do not clean in step.
	Interval time.Duration
	Jitter   time.Duration
	// Age is how long after its last transition a terminal job is cleaned.
	Age time.Duration
}

// RunCleaner cleans terminal jobs older than cfg.Age every cfg.Interval (+ jitter) until ctx
// ends. A failing job is logged and retried on the next pass.
func (s *Service) RunCleaner(ctx context.Context, cfg CleanerConfig) error {
	if cfg.Interval <= 0 {
		return errors.New("run cleaner: interval must be positive")
	}
	for {
		d := cfg.Interval
		if cfg.Jitter > 0 {
			d += rand.N(cfg.Jitter)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		n, err := s.CleanPass(ctx, cfg.Age)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "cleaner pass failed", "error", err, "cleaned", n)
		} else if n > 0 {
			s.log.InfoContext(ctx, "cleaner pass", "cleaned", n)
		}
	}
}

// CleanPass cleans up to 1000 terminal jobs whose last transition is older than age, and
// returns how many it cleaned.
func (s *Service) CleanPass(ctx context.Context, age time.Duration) (int, error) {
	js, err := s.store.DirtyJobs(ctx, jobs.Now().Add(-age), 1000)
	if err != nil {
		return 0, fmt.Errorf("find jobs to clean: %w", err)
	}
	var errs []error
	n := 0
	for _, j := range js {
		if err := s.Clean(ctx, j.ID, false); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.ID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
