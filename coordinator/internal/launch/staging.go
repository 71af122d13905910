package launch

// Reference data staging, the second kind of launched work: one staging task (the agent in
// its refdata mode) per refdata, site and attempt, submitted by the same submitter pass as
// jobs, through the same launchers, taken back the same way. The records (states, attempts,
// handles) are package refdata's; the reconciler ends or restages stagings that can no longer
// finish, through FailStaging and RetryStaging.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/kbase/cts/coordinator/internal/refdata"
	"github.com/kbase/cts/shared/launcher"
	"github.com/kbase/cts/shared/staging"
)

// Stagings is the record side of reference data staging (*refdata.Manager).
type Stagings interface {
	// Pending returns stagings waiting to be launched.
	Pending(ctx context.Context, limit int) ([]refdata.Task, error)
	// Launched records an accepted launch; false when the attempt was replaced meanwhile.
	Launched(ctx context.Context, id, site string, attempt int, handle string) (bool, error)
	// Fail ends a current, unfinished attempt in error; false when it was not.
	Fail(ctx context.Context, id, site string, attempt int, adminErr string) (bool, error)
	// Restage starts a new attempt after an infrastructure failure, within maxRetries.
	Restage(ctx context.Context, id, site string, attempt int, reason string, maxRetries int) (bool, error)
	// Recover starts a new attempt for an admin and returns the status before (nil: none).
	Recover(ctx context.Context, id, site string) (*refdata.Status, error)
	// Cleanable returns the status if the staging may be cleaned (ended, or force).
	Cleanable(ctx context.Context, id, site string, force bool) (*refdata.Status, error)
	// MarkCleaned records the clean.
	MarkCleaned(ctx context.Context, id, site string) error
}

// stagingLimit bounds the stagings one pass launches.
const stagingLimit = 1000

// stagePass launches every staging waiting for it. A launcher that fails leaves the staging
// created for the next pass.
func (s *Service) stagePass(ctx context.Context) error {
	if s.stagings == nil {
		return nil
	}
	tasks, err := s.stagings.Pending(ctx, stagingLimit)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tasks {
		if err := s.stage(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("stage refdata %s at %s: %w", t.ID, t.Site, err))
		}
	}
	return errors.Join(errs...)
}

// stage submits one staging attempt and records it. Submit is idempotent per attempt, so a
// crash between the launcher accepting the task and the record is harmless.
func (s *Service) stage(ctx context.Context, t refdata.Task) error {
	site, ok := s.sites[t.Site]
	if !ok {
		_, err := s.stagings.Fail(ctx, t.ID, t.Site, t.Attempt, fmt.Sprintf("site %q is not configured", t.Site))
		return err
	}
	env := s.baseEnv(site)
	env[staging.EnvAgentMode] = staging.ModeRefdata
	env[staging.EnvID] = t.ID
	env[staging.EnvS3Path] = t.File
	env[staging.EnvCRC64NVME] = t.CRC64NVME
	env[staging.EnvUnpack] = strconv.FormatBool(t.Unpack)
	env[staging.EnvCluster] = t.Site
	env[staging.EnvAttempt] = strconv.Itoa(t.Attempt)
	req := launcher.SubmitRequest{
		JobID: staging.JobID(t.ID), Attempt: t.Attempt, Containers: 1, CPUs: 1, User: t.User,
		BatchName: staging.JobID(t.ID), Env: env,
	}
	if s.cfg.Credentials != nil {
		// The task's own credential: this refdata, this site, this attempt.
		req.Credentials = []string{s.cfg.Credentials.StagingCredential(staging.JobID(t.ID), t.Site, t.Attempt,
			time.Now().Add(s.cfg.StagingCredentialTTL))}
	}
	resp, err := site.Launcher.Submit(ctx, req)
	if err != nil {
		return fmt.Errorf("launcher submit: %w", err)
	}
	current, err := s.stagings.Launched(ctx, t.ID, t.Site, t.Attempt, resp.Handle)
	if err != nil {
		return err
	}
	if !current {
		// Recovered meanwhile: the new attempt is launched anew; take this one back.
		if err := site.Launcher.Cancel(ctx, launcher.JobRef{JobID: staging.JobID(t.ID), Handle: resp.Handle}); err != nil && !errors.Is(err, launcher.ErrNotFound) {
			return fmt.Errorf("cancel a replaced staging attempt: %w", err)
		}
	}
	return nil
}

// cancelStaging stops a staging task at its site's launcher (gone is success).
func (s *Service) cancelStaging(ctx context.Context, id, site, handle string) error {
	if handle == "" {
		return nil
	}
	l, ok := s.SiteLauncher(site)
	if !ok {
		return nil
	}
	if err := l.Cancel(ctx, launcher.JobRef{JobID: staging.JobID(id), Handle: handle}); err != nil && !errors.Is(err, launcher.ErrNotFound) {
		return fmt.Errorf("cancel the staging task of refdata %s at %s: %w", id, site, err)
	}
	return nil
}

// FailStaging ends the staging's attempt in error with adminErr (the reconciler's verdict) and
// stops its task at the launcher. It reports whether this call ended it; a launcher that
// cannot cancel now does not undo the failure (its error is returned for the caller to log).
func (s *Service) FailStaging(ctx context.Context, st refdata.Staging, adminErr string) (bool, error) {
	ended, err := s.stagings.Fail(ctx, st.ID, st.Status.Cluster, st.Status.Attempt, adminErr)
	if err != nil || !ended {
		return ended, err
	}
	return true, s.cancelStaging(ctx, st.ID, st.Status.Cluster, st.Status.Handle)
}

// RetryStaging starts a new attempt of a staging whose task failed for an infrastructure
// reason (held, lost, never started), while fewer than maxRetries retries were made: the new
// attempt is recorded first (so the old task's late reports are refused), then the old task
// is stopped and the submitter poked. It returns false (and does nothing) when the staging is
// not eligible; the caller then fails it.
func (s *Service) RetryStaging(ctx context.Context, st refdata.Staging, reason string, maxRetries int) (bool, error) {
	if maxRetries <= 0 {
		return false, nil
	}
	ok, err := s.stagings.Restage(ctx, st.ID, st.Status.Cluster, st.Status.Attempt, reason, maxRetries)
	if err != nil || !ok {
		return false, err
	}
	s.Poke()
	return true, s.cancelStaging(ctx, st.ID, st.Status.Cluster, st.Status.Handle)
}

// RecoverStaging restages refdata id at site for an admin (see refdata.Manager.Recover); the
// task of a staging that had not ended is stopped.
func (s *Service) RecoverStaging(ctx context.Context, id, site string) error {
	before, err := s.stagings.Recover(ctx, id, site)
	if err != nil {
		return err
	}
	s.Poke()
	if before != nil && !before.State.Terminal() {
		if err := s.cancelStaging(ctx, id, site, before.Handle); err != nil {
			// Recorded and queued: the old task's reports are refused (another attempt).
			s.log.WarnContext(ctx, "recovered refdata: the replaced staging task could not be stopped", "refdata_id", id,
				"site", site, "error", err)
		}
	}
	return nil
}

// CleanStaging removes what the site's launcher keeps of the staging task of refdata id (its
// queue entry, work directory) and marks the status cleaned. A staging still running is
// refused (30400) unless force, which stops it. The staged data itself stays: jobs use it.
func (s *Service) CleanStaging(ctx context.Context, id, site string, force bool) error {
	st, err := s.stagings.Cleanable(ctx, id, site, force)
	if err != nil {
		return err
	}
	if st.Handle != "" {
		if err := s.cancelStaging(ctx, id, site, st.Handle); err != nil {
			return err
		}
		l, _ := s.SiteLauncher(site)
		if c, ok := l.(launcher.Cleaner); ok && st.State.Terminal() {
			err := c.Cleanup(ctx, launcher.JobRef{JobID: staging.JobID(id), Handle: st.Handle})
			if err != nil && !errors.Is(err, launcher.ErrNotFound) && !errors.Is(err, errors.ErrUnsupported) {
				return fmt.Errorf("clean refdata %s at %s: launcher cleanup: %w", id, site, err)
			}
		}
	}
	return s.stagings.MarkCleaned(ctx, id, site)
}

// baseEnv is the environment every agent of a site gets, job or staging task: the worker
// contract's service and S3 settings, then the site's worker environment.
func (s *Service) baseEnv(site *Site) map[string]string {
	env := map[string]string{
		"SERVICE_ROOT_URL": s.cfg.ServiceURL,
		"S3_URL":           s.cfg.S3URL,
		"S3_ACCESS_KEY":    s.cfg.S3AccessKey,
	}
	if s.cfg.S3Insecure {
		env["S3_INSECURE"] = "TRUE"
	}
	maps.Copy(env, site.WorkerEnv)
	return env
}
