package launch

import (
	"context"
	"errors"
	"fmt"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

// RetryLaunch launches a job again after an infrastructure failure (a node that held or lost
// the agent, an agent that never connected), as long as nothing of the job has run: the job
// is still download_submitted and every container too, so no state has to move backwards and
// no input was consumed. The current attempt's containers are canceled first. It returns
// false (and does nothing) when the job is not eligible or has used maxRetries relaunches;
// the caller then ends the job.
func (s *Service) RetryLaunch(ctx context.Context, id, reason string, maxRetries int) (bool, error) {
	if maxRetries <= 0 {
		return false, nil
	}
	j, err := s.store.GetJob(ctx, id)
	if err != nil {
		return false, err
	}
	if j.State != job.DownloadSubmitted || j.Launch == nil || j.Launch.Attempt >= maxRetries {
		return false, nil
	}
	subs, err := s.store.GetSubJobs(ctx, id)
	if err != nil {
		return false, err
	}
	for _, sj := range subs {
		if sj.State != job.DownloadSubmitted {
			return false, nil
		}
	}
	site, ok := s.sites[j.Launch.Site]
	if !ok {
		return false, nil
	}
	old := *j.Launch
	if err := site.Launcher.Cancel(ctx, launcher.JobRef{JobID: id, Handle: old.Handle}); err != nil && !errors.Is(err, launcher.ErrNotFound) {
		return false, fmt.Errorf("cancel attempt %d: %w", old.Attempt, err)
	}
	next := old.Attempt + 1
	resp, err := site.Launcher.Submit(ctx, s.request(j, site, next))
	if err != nil {
		return false, fmt.Errorf("launch attempt %d: %w", next, err)
	}
	nl := jobs.Launch{Site: old.Site, Handle: resp.Handle, Attempt: next, LaunchedAt: jobs.Now(),
		Retries: append(append([]string{}, old.Retries...), fmt.Sprintf("attempt %d (%s): %s", old.Attempt, old.Handle, reason))}
	if err := s.store.UpdateLaunch(ctx, id, job.DownloadSubmitted, old.Attempt, nl); err != nil {
		// The job moved on meanwhile (an agent reported, a cancel): take the new launch back.
		_ = site.Launcher.Cancel(ctx, launcher.JobRef{JobID: id, Handle: resp.Handle})
		if errors.Is(err, jobs.ErrConflict) {
			return false, nil
		}
		return false, err
	}
	s.log.WarnContext(ctx, "job relaunched after an infrastructure failure", "job_id", id, "attempt", next, "reason", reason)
	return true, nil
}
