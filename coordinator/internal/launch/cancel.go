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
	s.Poke()
	return nil
}

// alreadyEnded is the error of a cancel that comes too late (404, app code 40040 as in the
// Python service).
func alreadyEnded(id string, state job.State) error {
	if state == job.Canceling || state == job.Canceled {
		return ctserr.New(ctserr.CodeNoSuchJob, "Job %s is already %s: there is nothing more to cancel", id, state)
	}
	return ctserr.New(ctserr.CodeNoSuchJob, "Job %s has already ended (%s): only a job that has not ended can be canceled", id, state)
}

func (s *Service) finishCancel(ctx context.Context, j *jobs.Job) error {
	s.broadcastCancel(j.ID)
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

// WatchCancel registers interest in a job's cancellation; the channel receives one Cancel when
// the job is canceling. Call the returned function to unregister.
func (s *Service) WatchCancel(jobID string) (<-chan protocol.Cancel, func()) {
	ch := make(chan protocol.Cancel, 1)
	s.mu.Lock()
	s.watchers[jobID] = append(s.watchers[jobID], ch)
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		ws := s.watchers[jobID]
		for i, w := range ws {
			if w == ch {
				s.watchers[jobID] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(s.watchers[jobID]) == 0 {
			delete(s.watchers, jobID)
		}
	}
}

func (s *Service) broadcastCancel(jobID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.watchers[jobID] {
		select {
		case ch <- protocol.Cancel{Reason: "the job was canceled"}:
		default:
		}
	}
}
