package launch

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// passLimit is how many jobs of each kind (created, canceling) a pass takes on at most.
const passLimit = 100

// Pass runs one pass of the submitter (what RunSubmitter does on every tick or poke): created
// jobs go to their launcher, canceling jobs are finished, and reference data stagings waiting
// for a launch are launched.
func (s *Service) Pass(ctx context.Context) error {
	var errs []error
	// Created and canceling jobs in one query of the due queue; created ones first. The
	// canceling ones are asked for again on their own when the answer may have left some out
	// (a full answer: a backlog of created jobs before them) or when a job was canceled while
	// it was being submitted, so that a cancel waits for neither.
	js, err := s.store.JobsInStates(ctx, []job.State{job.Created, job.Canceling}, 2*passLimit)
	if err != nil {
		return fmt.Errorf("find created and canceling jobs: %w", err)
	}
	again := len(js) == 2*passLimit
	for _, j := range js {
		if j.State != job.Created {
			continue
		}
		raced, err := s.submitOne(ctx, j)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.ID, err))
		}
		again = again || raced
	}
	if again {
		cs, err := s.store.JobsInState(ctx, job.Canceling, passLimit)
		if err != nil {
			return fmt.Errorf("find canceling jobs: %w", err)
		}
		js = slices.DeleteFunc(js, func(j *jobs.Job) bool { return j.State == job.Canceling })
		js = append(js, cs...)
	}
	for _, j := range js {
		if j.State != job.Canceling {
			continue
		}
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

// submitOne hands created job j to its site's launcher and records it; raced reports that the
// job was canceled meanwhile (it is canceling now, its containers taken back).
func (s *Service) submitOne(ctx context.Context, j *jobs.Job) (raced bool, err error) {
	site, ok := s.sites[j.Input.Cluster]
	if !ok {
		_, err := s.mover.Move(ctx, j.ID, job.Error, time.Time{}, jobs.JobUpdate{
			Error: "An unexpected error occurred.", AdminError: fmt.Sprintf("site %q is not configured", j.Input.Cluster),
		})
		return false, err
	}
	resp, err := site.Launcher.Submit(ctx, s.request(j, site, 0))
	if err != nil {
		// The launcher may be down: leave the job in created, the next pass retries.
		return false, fmt.Errorf("launcher submit: %w", err)
	}
	_, err = s.mover.Move(ctx, j.ID, job.DownloadSubmitted, time.Time{}, jobs.JobUpdate{Launch: &jobs.Launch{Site: site.Name, Handle: resp.Handle, LaunchedAt: jobs.Now()}})
	if errors.Is(err, jobs.ErrConflict) {
		// Canceled meanwhile: take the containers back.
		if cerr := site.Launcher.Cancel(ctx, launcher.JobRef{JobID: j.ID, Handle: resp.Handle}); cerr != nil {
			return true, fmt.Errorf("cancel after lost submit race: %w", cerr)
		}
		return true, nil
	}
	if err != nil {
		return false, err
	}
	// Agents may have reported before the job was recorded as submitted.
	return false, s.fold.Fold(ctx, j.ID)
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
