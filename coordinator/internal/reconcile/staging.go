package reconcile

// Reference data stagings are launched work too: the same deadlines, heartbeats and launcher
// view end a staging that can no longer finish, and an infrastructure failure starts a new
// attempt (staging is idempotent: a stager that finds the data published is done).
//
//	created              not handed to the launcher within SubmitDeadline → error
//	download_submitted, the staging task:
//	  held                                   → restage (HoldReason)
//	  exited ≠ 0 without a final report      → restage
//	  exited 0 without a final report        → restage after HeartbeatDeadline
//	  removed / vanished                     → error
//	  stager silent (LastSeen)               → restage after HeartbeatDeadline
//	  stager never reported                  → restage ConnectDeadline after the task started
//	                                           (IdleDeadline while it waits in the queue)
//	  running past StagingDeadline           → error

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/staging"
)

// Stagings lists the reference data stagings that have not ended (*refdata.Manager).
type Stagings interface {
	InFlight(ctx context.Context, limit int) ([]refdata.Staging, error)
}

// StagingLaunch is what the reconciler needs of package launch for stagings
// (*launch.Service).
type StagingLaunch interface {
	FailStaging(ctx context.Context, st refdata.Staging, adminErr string) (bool, error)
	RetryStaging(ctx context.Context, st refdata.Staging, reason string, maxRetries int) (bool, error)
}

// reconcileStagings looks at every staging in flight once.
func (r *Reconciler) reconcileStagings(ctx context.Context) error {
	if r.stagings == nil {
		return nil
	}
	sts, err := r.stagings.InFlight(ctx, r.cfg.Limit)
	if err != nil {
		return err
	}
	bySite := map[string][]launcher.JobRef{}
	for _, st := range sts {
		if st.Status.Handle != "" {
			bySite[st.Status.Cluster] = append(bySite[st.Status.Cluster], launcher.JobRef{JobID: staging.JobID(st.ID), Handle: st.Status.Handle})
		}
	}
	statuses := r.launcherStatuses(ctx, bySite)
	var errs []error
	for _, st := range sts {
		f := DecideStaging(r.cfg, r.now(), st, statuses[staging.JobID(st.ID)+"/"+st.Status.Cluster])
		if f == nil {
			continue
		}
		if f.Retryable && r.cfg.MaxLaunchRetries > 0 {
			retried, err := r.launch.RetryStaging(ctx, st, f.AdminError, r.cfg.MaxLaunchRetries)
			if err != nil {
				errs = append(errs, fmt.Errorf("restage refdata %s at %s: %w", st.ID, st.Status.Cluster, err))
			}
			if retried {
				r.log.WarnContext(ctx, "reconciler restaged refdata", "refdata_id", st.ID, "site", st.Status.Cluster, "reason", f.AdminError)
				continue
			}
			if err != nil {
				continue
			}
		}
		ended, err := r.launch.FailStaging(ctx, st, f.AdminError)
		if ended {
			r.log.WarnContext(ctx, "reconciler ended refdata staging", "refdata_id", st.ID, "site", st.Status.Cluster, "admin_error", f.AdminError)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("fail refdata %s at %s: %w", st.ID, st.Status.Cluster, err))
		}
	}
	return errors.Join(errs...)
}

func lastTransition(ts []refdata.Transition, s refdata.State) time.Time {
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].State == s {
			return ts[i].Time
		}
	}
	return time.Time{}
}

// DecideStaging returns the failure of a staging that can no longer finish by itself, or
// nil. ls is the launcher's view of its task (nil when unknown). It is pure.
func DecideStaging(cfg Config, now time.Time, st refdata.Staging, ls *launcher.JobStatus) *Failure {
	cfg = cfg.withDefaults()
	s := st.Status
	what := fmt.Sprintf("the staging task of refdata %s at site %q (attempt %d)", st.ID, s.Cluster, s.Attempt)
	switch s.State {
	case refdata.Created:
		at := lastTransition(s.Transitions, refdata.Created)
		if at.IsZero() || now.Sub(at) <= cfg.SubmitDeadline {
			return nil
		}
		return &Failure{AdminError: fmt.Sprintf("%s was not handed to the launcher within %v (check the launcher plugin and the backend)", what, cfg.SubmitDeadline)}
	case refdata.DownloadSubmitted:
	default:
		return nil
	}
	launched := s.LaunchedAt
	if launched.IsZero() {
		launched = lastTransition(s.Transitions, refdata.DownloadSubmitted)
	}
	if ls != nil && ls.Err != nil {
		if errors.Is(ls.Err, launcher.ErrNotFound) {
			return &Failure{AdminError: fmt.Sprintf("the launcher no longer knows %s (handle %s): %v", what, s.Handle, ls.Err), Retryable: true}
		}
		ls = nil
	}
	var c launcher.ContainerStatus
	known := false
	if ls != nil {
		for _, cs := range ls.Containers {
			if cs.Container == 0 {
				c, known = cs, true
			}
		}
	}
	code := "none"
	if known && c.ExitCode != nil {
		code = fmt.Sprint(*c.ExitCode)
	}
	if known {
		switch c.State {
		case launcher.StateHeld:
			return &Failure{AdminError: fmt.Sprintf("%s is held by the compute system: %s", what, c.Reason), Retryable: true}
		case launcher.StateExited:
			if c.ExitCode == nil || *c.ExitCode != 0 {
				return &Failure{AdminError: fmt.Sprintf("%s exited with code %s before reporting its final state%s", what, code, suffix(c.Reason)), Retryable: true}
			}
			if !c.Ended.IsZero() && now.Sub(c.Ended) > cfg.HeartbeatDeadline {
				return &Failure{AdminError: fmt.Sprintf("%s exited with code 0 %v ago, but its final report never arrived", what, since(now, c.Ended)), Retryable: true}
			}
		case launcher.StateRemoved, launcher.StateUnknown:
			how := "was removed from the compute system"
			if c.State == launcher.StateUnknown {
				how = "vanished from the compute system"
			}
			return &Failure{AdminError: fmt.Sprintf("%s %s before it reported a final state (exit code %s)%s", what, how, code, suffix(c.Reason))}
		}
	}
	if !s.LastSeen.IsZero() {
		if now.Sub(s.LastSeen) > cfg.HeartbeatDeadline {
			return &Failure{AdminError: fmt.Sprintf("the stager of %s was last heard from %v ago (deadline %v)", what, since(now, s.LastSeen), cfg.HeartbeatDeadline), Retryable: true}
		}
	} else {
		from, limit := launched, cfg.ConnectDeadline
		switch {
		case known && c.State == launcher.StateIdle:
			limit = cfg.IdleDeadline
		case known && !c.Started.IsZero():
			from = c.Started
		}
		if !from.IsZero() && now.Sub(from) > limit {
			return &Failure{AdminError: fmt.Sprintf("the stager of %s never reported within %v (%s since %s; launcher state %s)",
				what, limit, since(now, from), from.UTC().Format(time.RFC3339), stateOf(known, c)), Retryable: true}
		}
	}
	if !launched.IsZero() && now.Sub(launched) > cfg.StagingDeadline {
		return &Failure{AdminError: fmt.Sprintf("%s has run for %v, more than the staging deadline of %v", what, since(now, launched), cfg.StagingDeadline)}
	}
	return nil
}
