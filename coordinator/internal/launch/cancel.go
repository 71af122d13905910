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
	if _, err := jobs.GetFor(ctx, s.store, u, id); err != nil {
		return err
	}
	_, err := s.mover.Move(ctx, id, job.Canceling, time.Time{}, jobs.JobUpdate{})
	if errors.Is(err, jobs.ErrConflict) {
		return ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' not in states ['canceled', 'canceling', 'complete', 'error'] exists", id)
	}
	if err != nil {
		return err
	}
	s.Poke()
	return nil
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
