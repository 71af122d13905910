package launch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

// Poke wakes the submitter: a job was created or canceled.
//
// The submitter runs on the replica holding its lease: this replica's, if it runs here, and
// the other replicas' through the signals bus.
func (s *Service) Poke() {
	s.Wake()
	s.bus.Poke(PokeSubmitter)
}

// PokeSubmitter is the name of the submitter's pokes on the signals bus.
const PokeSubmitter = "submitter"

// Wake wakes this replica's submitter, if it runs here (another replica poked it).
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// RunSubmitter hands created jobs to their site's launcher until ctx ends. It is durable:
// it works from the store, so a job saved before a crash is submitted after the restart, and
// the launcher's idempotent Submit makes a crash between submitting and recording harmless.
func (s *Service) RunSubmitter(ctx context.Context) error {
	t := time.NewTicker(s.cfg.SubmitInterval)
	defer t.Stop()
	for {
		if err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "submitter pass failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Pass runs one pass of the submitter (what RunSubmitter does on every tick or poke): created
// jobs go to their launcher, canceling jobs are finished, and reference data stagings waiting
// for a launch are launched.
func (s *Service) Pass(ctx context.Context) error {
	var errs []error
	js, err := s.store.JobsInState(ctx, job.Created, 100)
	if err != nil {
		return fmt.Errorf("find created jobs: %w", err)
	}
	for _, j := range js {
		if err := s.submitOne(ctx, j); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.ID, err))
		}
	}
	cs, err := s.store.JobsInState(ctx, job.Canceling, 100)
	if err != nil {
		return fmt.Errorf("find canceling jobs: %w", err)
	}
	for _, j := range cs {
		if err := s.finishCancel(ctx, j); err != nil {
			errs = append(errs, fmt.Errorf("cancel job %s: %w", j.ID, err))
		}
	}
	if err := s.stagePass(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// workerEnv is the environment every agent of a job gets (the CTS worker contract); the
// launcher adds CONTAINER_NUMBER and the attempt.
func (s *Service) workerEnv(j *jobs.Job, site *Site) map[string]string {
	env := s.baseEnv(site)
	env["JOB_ID"] = j.ID
	env["S3_ERROR_LOG_PATH"] = strings.TrimSuffix(s.cfg.LogDir, "/") + "/" + j.ID
	return env
}

func (s *Service) submitOne(ctx context.Context, j *jobs.Job) error {
	site, ok := s.sites[j.Input.Cluster]
	if !ok {
		_, err := s.mover.Move(ctx, j.ID, job.Error, time.Time{}, jobs.JobUpdate{
			Error: "An unexpected error occurred.", AdminError: fmt.Sprintf("site %q is not configured", j.Input.Cluster),
		})
		return err
	}
	resp, err := site.Launcher.Submit(ctx, s.request(j, site, 0))
	if err != nil {
		// The launcher may be down: leave the job in created, the next pass retries.
		return fmt.Errorf("launcher submit: %w", err)
	}
	_, err = s.mover.Move(ctx, j.ID, job.DownloadSubmitted, time.Time{}, jobs.JobUpdate{Launch: &jobs.Launch{Site: site.Name, Handle: resp.Handle, LaunchedAt: jobs.Now()}})
	if errors.Is(err, jobs.ErrConflict) {
		// Canceled meanwhile: take the containers back.
		if cerr := site.Launcher.Cancel(ctx, launcher.JobRef{JobID: j.ID, Handle: resp.Handle}); cerr != nil {
			return fmt.Errorf("cancel after lost submit race: %w", cerr)
		}
		return nil
	}
	if err != nil {
		return err
	}
	// Agents may have reported before the job was recorded as submitted.
	return s.fold.Fold(ctx, j.ID)
}

// request is the launcher request for one attempt of a job.
func (s *Service) request(j *jobs.Job, site *Site, attempt int) launcher.SubmitRequest {
	req := launcher.SubmitRequest{
		JobID: j.ID, Attempt: attempt, Containers: j.Input.NumContainers, CPUs: j.Input.CPUs,
		MemoryBytes: j.Input.Memory, RuntimeSeconds: j.Input.RuntimeSeconds, DiskBytes: diskEstimate(j),
		User: j.User, BatchName: "cts-" + j.ID, Env: s.workerEnv(j, site),
	}
	if s.cfg.Credentials != nil {
		// Each container's own credential, for this launch attempt only: valid while the
		// container may wait, run and report.
		runtime := time.Duration(j.Input.RuntimeSeconds * float64(time.Second))
		req.Credentials = s.cfg.Credentials.LaunchCredentials(j.ID, attempt, j.Input.NumContainers,
			time.Now().Add(runtime+s.cfg.CredentialSlack))
	}
	return req
}

// diskEstimate asks for room for the inputs twice over (inputs and outputs) plus 1 GiB.
func diskEstimate(j *jobs.Job) int64 {
	var total int64
	for _, n := range j.InputSizes {
		total += n
	}
	per := total / int64(max(1, j.Input.NumContainers))
	return 2*per + 1<<30
}
