package jobs

// What the reconciler (package reconcile) needs of the service: the jobs to look at, the
// sites' launchers, a way to end a job with precise messages, and accounting. Kept in its own
// file so the reconciler's needs stay visible.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

// Accounting is the resource use recorded on a finished job (reference §6.6).
type Accounting struct {
	CPUHours  *float64
	CPUFactor *float64
	MaxMemory *int64
}

// ReconcileStore is the optional store capability for accounting after a job ended. The
// MongoDB store implements it (store/reconcile.go).
type ReconcileStore interface {
	// JobsToAccount returns up to limit terminal jobs that were launched, ended at or after
	// since, and have no accounting recorded yet, oldest first.
	JobsToAccount(ctx context.Context, since time.Time, limit int) ([]*Job, error)
	// SetAccounting records a terminal job's accounting once; a job that is not terminal is
	// ErrConflict, an unknown one ErrNotFound.
	SetAccounting(ctx context.Context, id string, a Accounting) error
}

// activeStates are the states the reconciler watches: every non-terminal one.
var activeStates = []job.State{job.Created, job.DownloadSubmitted, job.JobSubmitting, job.JobSubmitted,
	job.UploadSubmitting, job.UploadSubmitted, job.ErrorProcessingSubmitting, job.ErrorProcessingSubmitted, job.Canceling}

// ActiveJobs returns the non-terminal jobs, up to limit per state.
func (s *Service) ActiveJobs(ctx context.Context, limit int) ([]*Job, error) {
	var out []*Job
	for _, st := range activeStates {
		js, err := s.store.JobsInState(ctx, st, limit)
		if err != nil {
			return nil, fmt.Errorf("active jobs: %w", err)
		}
		out = append(out, js...)
	}
	return out, nil
}

// SiteLauncher returns the launcher of the named site.
func (s *Service) SiteLauncher(name string) (Launcher, bool) {
	site, ok := s.sites[name]
	if !ok {
		return nil, false
	}
	return site.Launcher, true
}

// FailJob ends a non-terminal job in error with the given admin and user messages: the job
// first (so a concurrent fold cannot replace the messages), then every non-terminal
// container, then it tells connected agents to stop and asks the launcher to remove what is
// left. It reports whether this call ended the job (false: it had ended already). A launcher
// that cannot cancel now does not undo the failure; its error is returned for the caller to
// log.
func (s *Service) FailJob(ctx context.Context, id, adminErr, userErr string) (bool, error) {
	var j *Job
	for range 5 {
		cur, err := s.store.GetJob(ctx, id)
		if err != nil {
			return false, err
		}
		if cur.State.Terminal() {
			return false, nil
		}
		logPath := ""
		if subs, err := s.store.GetSubJobs(ctx, id); err == nil {
			for _, sj := range subs {
				if _, ran := reachedAt(sj, [2]job.State{job.JobSubmitted}); ran {
					logPath = s.logPath(id)
				}
			}
		}
		j, err = s.transitionFrom(ctx, id, []job.State{cur.State}, job.Error, time.Time{},
			JobUpdate{Error: userErr, AdminError: adminErr, LogPath: logPath})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return false, err
		}
		break
	}
	if j == nil {
		return false, fmt.Errorf("fail job %s: too many concurrent updates", id)
	}
	s.log.WarnContext(ctx, "job failed by the reconciler", "job_id", id, "admin_error", adminErr)
	subs, err := s.store.GetSubJobs(ctx, id)
	if err != nil {
		return true, err
	}
	var errs []error
	for _, sj := range subs {
		if sj.State.Terminal() {
			continue
		}
		_, err := s.store.TransitionSubJob(ctx, id, sj.SubID, []job.State{sj.State},
			Transition{State: job.Error, Time: s.now()}, SubJobUpdate{AdminError: "the job was ended: " + adminErr}, Seq{})
		if err != nil && !errors.Is(err, ErrConflict) {
			errs = append(errs, err)
		}
	}
	s.broadcastCancel(id)
	if j.Launch != nil {
		if l, ok := s.SiteLauncher(j.Launch.Site); ok {
			if err := l.Cancel(ctx, launcher.JobRef{JobID: id, Handle: j.Launch.Handle}); err != nil && !errors.Is(err, launcher.ErrNotFound) {
				errs = append(errs, fmt.Errorf("launcher cancel: %w", err))
			}
		}
	}
	return true, errors.Join(errs...)
}

func (s *Service) logPath(id string) string {
	return fmt.Sprintf("%s/%s", trimSlash(s.cfg.LogDir), id)
}

func trimSlash(p string) string {
	for len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}

// JobsToAccount returns terminal launched jobs without accounting that ended at or after
// since (errors.ErrUnsupported when the store cannot).
func (s *Service) JobsToAccount(ctx context.Context, since time.Time, limit int) ([]*Job, error) {
	rs, ok := s.store.(ReconcileStore)
	if !ok {
		return nil, fmt.Errorf("jobs to account: %w", errors.ErrUnsupported)
	}
	return rs.JobsToAccount(ctx, since, limit)
}

// RecordAccounting records a terminal job's accounting (errors.ErrUnsupported when the store
// cannot).
func (s *Service) RecordAccounting(ctx context.Context, id string, a Accounting) error {
	rs, ok := s.store.(ReconcileStore)
	if !ok {
		return fmt.Errorf("record accounting: %w", errors.ErrUnsupported)
	}
	return rs.SetAccounting(ctx, id, a)
}
