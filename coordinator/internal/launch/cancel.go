package launch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/protocol"
)

// Cancel moves a job the user owns (or any job, for an admin) to canceling; the submitter loop
// then stops its agents and records it canceled.
func (s *Service) Cancel(ctx context.Context, u jobs.User, id string) error {
	j, err := jobs.GetFor(ctx, s.store, u, id)
	if err != nil {
		return err
	}
	_, err = s.mover.Move(ctx, id, job.Canceling, time.Time{}, jobs.JobUpdate{})
	if errors.Is(err, jobs.ErrConflict) {
		// The Python service says "No job with ID '...' not in states [...] exists" here; the
		// app code stays the same, the message says what the state is.
		state := j.State
		if now, gerr := jobs.GetFor(ctx, s.store, u, id); gerr == nil {
			state = now.State
		}
		return alreadyEnded(id, state)
	}
	if err != nil {
		return err
	}
	// The agents hear of it now, whichever replica they are connected to; the submitter
	// (on whichever replica holds its lease) then takes the containers back and records the
	// job canceled.
	if err := s.bus.Publish(ctx, id, cancelReason); err != nil {
		s.log.WarnContext(ctx, "cancel: the stop signal was not recorded; the submitter records it", "job_id", id, "error", err)
	}
	s.Poke()
	return nil
}

// cancelReason is what the agents of a canceled job are told.
const cancelReason = "the job was canceled"

// alreadyEnded is the error of a cancel that comes too late (404, app code 40040 as in the
// Python service).
func alreadyEnded(id string, state job.State) error {
	if state == job.Canceling || state == job.Canceled {
		return ctserr.New(ctserr.CodeNoSuchJob, "Job %s is already %s: there is nothing more to cancel", id, state)
	}
	return ctserr.New(ctserr.CodeNoSuchJob, "Job %s has already ended (%s): only a job that has not ended can be canceled", id, state)
}

func (s *Service) finishCancel(ctx context.Context, j *jobs.Job) error {
	// Again, durably: the signal of Cancel may not have been recorded (a crash, an outage).
	if err := s.bus.Publish(ctx, j.ID, cancelReason); err != nil {
		return err
	}
	if j.Launch != nil {
		if site, ok := s.sites[j.Launch.Site]; ok {
			if err := site.Launcher.Cancel(ctx, launcher.JobRef{JobID: j.ID, Handle: j.Launch.Handle}); err != nil && !errors.Is(err, launcher.ErrNotFound) {
				return fmt.Errorf("launcher cancel: %w", err)
			}
		}
	}
	// The agents of containers that started upload their logs as they stop: the canceled
	// job serves them like any other (the Python service records no log folder here).
	subs, err := s.store.GetSubJobs(ctx, j.ID)
	if err != nil {
		return fmt.Errorf("cancel job %s: %w", j.ID, err)
	}
	_, err = s.mover.Move(ctx, j.ID, job.Canceled, time.Time{}, jobs.JobUpdate{LogPath: jobs.LogPath(s.cfg.LogDir, j.ID, subs)})
	if errors.Is(err, jobs.ErrConflict) {
		return nil // ended otherwise meanwhile
	}
	return err
}

// WatchCancel registers interest in a job's stop signal (its cancel, or the reconciler ending
// it) published by any replica; the channel receives one Cancel. Call the returned function
// to unregister.
func (s *Service) WatchCancel(jobID string) (<-chan protocol.Cancel, func()) {
	ch := make(chan protocol.Cancel, 1)
	return ch, s.bus.Watch(jobID, func(c protocol.Cancel) {
		select {
		case ch <- c:
		default:
		}
	})
}
