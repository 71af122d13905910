package launch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

// FailJob ends a non-terminal job in error with the given admin and user messages: the job
// first (so a concurrent fold cannot replace the messages), then every non-terminal
// container, then it tells connected agents to stop and asks the launcher to remove what is
// left. It reports whether this call ended the job (false: it had ended already). A launcher
// that cannot cancel now does not undo the failure; its error is returned for the caller to
// log.
func (s *Service) FailJob(ctx context.Context, id, adminErr, userErr string) (bool, error) {
	var j *jobs.Job
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
			logPath = jobs.LogPath(s.cfg.LogDir, id, subs)
		}
		j, err = s.mover.MoveFrom(ctx, id, []job.State{cur.State}, job.Error, time.Time{},
			jobs.JobUpdate{Error: userErr, AdminError: adminErr, LogPath: logPath})
		if errors.Is(err, jobs.ErrConflict) {
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
			jobs.Transition{State: job.Error, Time: jobs.Now()}, jobs.SubJobUpdate{AdminError: "the job was ended: " + adminErr}, jobs.Seq{})
		if err != nil && !errors.Is(err, jobs.ErrConflict) {
			errs = append(errs, err)
		}
	}
	if err := s.bus.Publish(ctx, id, "the job was ended: "+userErr); err != nil {
		errs = append(errs, err)
	}
	if j.Launch != nil {
		if l, ok := s.SiteLauncher(j.Launch.Site); ok {
			if err := l.Cancel(ctx, launcher.JobRef{JobID: id, Handle: j.Launch.Handle}); err != nil && !errors.Is(err, launcher.ErrNotFound) {
				errs = append(errs, fmt.Errorf("launcher cancel: %w", err))
			}
		}
	}
	return true, errors.Join(errs...)
}
