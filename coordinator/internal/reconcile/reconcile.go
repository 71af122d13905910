// Package reconcile is the coordinator's reconciler: a loop that compares every non-terminal
// job with its site launcher's view and with its agents' heartbeats, and ends, with a precise
// admin_error and a clear user error, every job that can no longer finish by itself. No job
// stays non-terminal forever:
//
//	created             not handed to the launcher within SubmitDeadline  → error
//	canceling           the launcher did not confirm within CancelDeadline → error
//	launched, per container whose sub-job is not terminal:
//	  held                                  → error (HoldReason, container, attempt)
//	  exited ≠ 0 / removed / vanished       → error (the agent could not report its final state)
//	  exited 0 without a final report       → error after HeartbeatDeadline
//	  agent never connected                 → error ConnectDeadline after the proc started
//	                                          (after the launch when the launcher cannot tell;
//	                                          IdleDeadline while the proc waits in the queue)
//	  agent silent (LastSeen)               → error after HeartbeatDeadline
//	  running past runtime + RuntimeGrace   → error
//	launcher unreachable                    → only the heartbeat and deadline rules apply
//	every container finished (terminal sub-jobs) but the job did not: folded to its end
//	                                          (the fold after the last report failed)
//
// A failure the verdict marks retryable (held, lost or never-connected agents) is first handed
// to launch.Service.RetryLaunch, which launches the job again as a new attempt when nothing of
// it has run yet (every container still download_submitted) and MaxLaunchRetries allows;
// otherwise launch.Service.FailJob ends the job, stops the connected agents and asks the
// launcher to remove the job's containers. After jobs end (by any path) it records their
// accounting (cpu_hours, cpu_factor, max_memory) from the launcher's view once the containers
// have ended, as the Python service does.
//
// Reference data staging tasks are launched work too and get the same rules (staging.go):
// deadlines, the stager's heartbeats, the launcher's view; an infrastructure failure restages
// (a new attempt, within MaxLaunchRetries), anything else ends the staging in error.
//
// A pass reads a job's sub-jobs only when a rule could end the job because of them (memo.go):
// every one the first time it meets the job, afterwards only the containers the launcher
// reports stopped and those whose agents have gone silent.
//
// It must not change job or staging states except through package launch, and must not fail
// work because the launcher is merely unreachable.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/launch"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

// Config are the reconciler's intervals and deadlines. Zero fields take the defaults.
type Config struct {
	// Interval between passes (default 30 s).
	Interval time.Duration
	// HeartbeatDeadline is how long an agent may stay silent (default 2 min; the coordinator
	// pings every 15 s, and each replica records its connected agents every 10 s: Presence).
	HeartbeatDeadline time.Duration
	// ConnectDeadline is how long after its proc started an agent may take to connect
	// (default 10 min).
	ConnectDeadline time.Duration
	// IdleDeadline is how long a container may wait in the backend's queue (default 7 days).
	IdleDeadline time.Duration
	// SubmitDeadline is how long a job may stay created (default 1 h).
	SubmitDeadline time.Duration
	// CancelDeadline is how long a job may stay canceling (default 30 min).
	CancelDeadline time.Duration
	// RuntimeGrace is added to the job's runtime before a running container is overdue
	// (default 30 min: the agent itself stops the container at its runtime).
	RuntimeGrace time.Duration
	// AccountingWindow is how long after a job ended its accounting is still collected
	// (default 1 h); AccountingWait how long the reconciler waits for the containers to end
	// before recording what it has (default 60 s, as the Python service).
	AccountingWindow, AccountingWait time.Duration
	// Limit bounds the jobs looked at per state and pass (default 500).
	Limit int
	// MaxLaunchRetries is how many times a job whose containers failed for infrastructure
	// reasons before any of them ran is launched again (0: never); a reference data staging
	// is restaged as many times.
	MaxLaunchRetries int
	// StagingDeadline is how long a reference data staging task may run (default 24 h).
	StagingDeadline time.Duration
	// Connected, when set, tells whether the agent of a container (of agent attempt attempt,
	// when set) is connected to this coordinator right now: such an agent counts as heard
	// from now, whatever its stored LastSeen.
	Connected func(jobID string, container int, attempt string) bool
	// Presence, when set, returns the agents the replicas record as connected (or as gone
	// recently), each with when it was last heard from (store.Presence): the heartbeats of
	// agents connected to any replica, read once per pass.
	Presence func(ctx context.Context) ([]jobs.Touch, error)
	// Ended, when set, reports whether this coordinator knows the container to have ended (its
	// sub-job terminal: ingest's knowledge, never ahead of the store), sparing its read.
	Ended func(jobID string, container int) bool
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Interval, 30*time.Second)
	def(&c.HeartbeatDeadline, 2*time.Minute)
	def(&c.ConnectDeadline, 10*time.Minute)
	def(&c.IdleDeadline, 7*24*time.Hour)
	def(&c.SubmitDeadline, time.Hour)
	def(&c.CancelDeadline, 30*time.Minute)
	def(&c.RuntimeGrace, 30*time.Minute)
	def(&c.AccountingWindow, time.Hour)
	def(&c.AccountingWait, time.Minute)
	def(&c.StagingDeadline, 24*time.Hour)
	if c.Limit <= 0 {
		c.Limit = 500
	}
	return c
}

// Store is what the reconciler reads, and the accounting it records.
type Store interface {
	// UnfinishedJobs returns up to limit jobs that have not ended, oldest UpdateTime first.
	UnfinishedJobs(ctx context.Context, limit int) ([]*jobs.Job, error)
	jobs.SubJobGetter
	// GetSubJob returns one sub-job (a point read), or jobs.ErrNotFound.
	GetSubJob(ctx context.Context, id string, sub int) (*jobs.SubJob, error)
	// JobsToAccount returns up to limit terminal jobs that were launched, ended at or after
	// since, and have no accounting recorded yet, oldest first.
	JobsToAccount(ctx context.Context, since time.Time, limit int) ([]*jobs.Job, error)
	// SetAccounting records a terminal job's accounting once; a job that is not terminal is
	// jobs.ErrConflict, an unknown one jobs.ErrNotFound.
	SetAccounting(ctx context.Context, id string, a jobs.Accounting) error
}

// Launch is what the reconciler needs of package launch (*launch.Service implements it).
type Launch interface {
	SiteLauncher(name string) (launch.Launcher, bool)
	FailJob(ctx context.Context, id, adminErr, userErr string) (bool, error)
	RetryLaunch(ctx context.Context, id, reason string, maxRetries int) (bool, error)
	// Refold folds the job's sub-job states into its state again.
	Refold(ctx context.Context, id string) error
	StagingLaunch
}

var _ Launch = (*launch.Service)(nil)

// activeStates are the states the reconciler watches: every non-terminal one.
var activeStates = []job.State{job.Created, job.DownloadSubmitted, job.JobSubmitting, job.JobSubmitted,
	job.UploadSubmitting, job.UploadSubmitted, job.ErrorProcessingSubmitting, job.ErrorProcessingSubmitted, job.Canceling}

// Reconciler runs the passes. It is safe to run one per coordinator replica: every change
// goes through conditional updates. Passes of one Reconciler must not overlap (Run runs them
// one after the other).
type Reconciler struct {
	cfg      Config
	store    Store
	launch   Launch
	stagings Stagings
	log      *slog.Logger
	now      func() time.Time
	wake     chan struct{}
	// memo is what earlier passes learned of the active jobs' containers (memo.go).
	memo map[string]*jobMemo
}

// New returns a reconciler; stagings may be nil (no reference data), now is the clock (nil:
// time.Now).
func New(cfg Config, store Store, l Launch, stagings Stagings, log *slog.Logger, now func() time.Time) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Reconciler{cfg: cfg.withDefaults(), store: store, launch: l, stagings: stagings, log: log, now: now,
		wake: make(chan struct{}, 1), memo: map[string]*jobMemo{}}
}

// Run runs a pass every Interval, and after every Poke, until ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "reconciler pass failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.wake:
		}
	}
}

// Poke makes Run pass soon (a site's launcher is back: its jobs should be looked at now).
func (r *Reconciler) Poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Pass looks at every active job once, then at every reference data staging in flight, then
// collects accounting of ended jobs.
func (r *Reconciler) Pass(ctx context.Context) error {
	active, err := r.activeJobs(ctx)
	if err != nil {
		return err
	}
	statuses := r.statuses(ctx, active)
	heard, err := r.heard(ctx)
	if err != nil {
		// Without it, agents connected to other replicas would look silent.
		return err
	}
	now := r.now()
	r.forgetAllBut(active)
	var errs []error
	for _, j := range active {
		subs, finished, err := r.subJobs(ctx, j, statuses[j.ID], heard, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.ID, err))
			continue
		}
		if finished {
			// Every container ended but the job did not: the fold after the last report
			// failed (and the agent, whose event was applied, will not send it again).
			if err := r.launch.Refold(ctx, j.ID); err != nil {
				errs = append(errs, fmt.Errorf("fold finished job %s: %w", j.ID, err))
			} else {
				r.log.WarnContext(ctx, "reconciler folded a job whose containers had all finished", "job_id", j.ID, "state", j.State)
			}
			continue
		}
		f := Decide(r.cfg, now, j, subs, statuses[j.ID])
		if f == nil {
			continue
		}
		if f.Retryable && r.cfg.MaxLaunchRetries > 0 {
			retried, err := r.launch.RetryLaunch(ctx, j.ID, f.AdminError, r.cfg.MaxLaunchRetries)
			if err != nil {
				errs = append(errs, fmt.Errorf("relaunch job %s: %w", j.ID, err))
				continue
			}
			if retried {
				r.log.WarnContext(ctx, "reconciler relaunched job", "job_id", j.ID, "reason", f.AdminError)
				continue
			}
		}
		ended, err := r.launch.FailJob(ctx, j.ID, f.AdminError, f.UserError)
		if ended {
			r.log.WarnContext(ctx, "reconciler ended job", "job_id", j.ID, "admin_error", f.AdminError)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("fail job %s: %w", j.ID, err))
		}
	}
	if err := r.reconcileStagings(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := r.account(ctx); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// activeJobs returns the non-terminal jobs, up to Limit per state (in one read: the store's
// cost is one pass over the unfinished jobs).
func (r *Reconciler) activeJobs(ctx context.Context) ([]*jobs.Job, error) {
	js, err := r.store.UnfinishedJobs(ctx, r.cfg.Limit*len(activeStates))
	if err != nil {
		return nil, fmt.Errorf("active jobs: %w", err)
	}
	return js, nil
}

// statuses asks each site's launcher, in one batched call per site, about the launched jobs.
// A site whose launcher cannot answer is left out (nil status: only the deadline rules apply).
func (r *Reconciler) statuses(ctx context.Context, js []*jobs.Job) map[string]*launcher.JobStatus {
	bySite := map[string][]launcher.JobRef{}
	for _, j := range js {
		if j.Launch != nil {
			bySite[j.Launch.Site] = append(bySite[j.Launch.Site], launcher.JobRef{JobID: j.ID, Handle: j.Launch.Handle})
		}
	}
	out := map[string]*launcher.JobStatus{}
	for key, st := range r.launcherStatuses(ctx, bySite) {
		id, _, _ := strings.Cut(key, "/")
		out[id] = st
	}
	return out
}

// launcherStatuses asks each site's launcher, in one batched call per site, about refs. The
// answer is keyed "<job id>/<site>"; a site whose launcher cannot answer is left out.
func (r *Reconciler) launcherStatuses(ctx context.Context, bySite map[string][]launcher.JobRef) map[string]*launcher.JobStatus {
	out := map[string]*launcher.JobStatus{}
	for site, refs := range bySite {
		l, ok := r.launch.SiteLauncher(site)
		if !ok {
			continue
		}
		sl, ok := l.(launch.StatusLauncher)
		if !ok {
			continue
		}
		sts, err := sl.Status(ctx, refs)
		if err != nil {
			r.log.WarnContext(ctx, "launcher status failed", "site", site, "error", err)
			continue
		}
		for i := range sts {
			if i < len(refs) {
				out[refs[i].JobID+"/"+site] = &sts[i]
			}
		}
	}
	return out
}

// Failure is the verdict on a job that must end.
type Failure struct {
	AdminError, UserError string
	// Retryable marks an infrastructure failure (a held or lost agent, one that never
	// connected): the job may be launched again if nothing of it has run yet.
	Retryable bool
}

func transitionTime(ts []jobs.Transition, s job.State) (time.Time, bool) {
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].State == s {
			return ts[i].Time, true
		}
	}
	return time.Time{}, false
}

func since(now, t time.Time) time.Duration { return now.Sub(t).Round(time.Second) }

// Finished reports whether every container of a launched, unfinished job has ended: the job
// only needs its fold.
func Finished(j *jobs.Job, subs []jobs.SubJob) bool {
	if j.State.Terminal() || j.State == job.Created || j.Launch == nil || len(subs) == 0 || len(subs) < j.Input.NumContainers {
		return false
	}
	for _, sj := range subs {
		if !sj.State.Terminal() {
			return false
		}
	}
	return true
}

// Decide returns the failure of a job that can no longer finish by itself, or nil. st is the
// launcher's view (nil when unknown). It is pure: the reconciler's rules in one place.
func Decide(cfg Config, now time.Time, j *jobs.Job, subs []jobs.SubJob, st *launcher.JobStatus) *Failure {
	cfg = cfg.withDefaults()
	switch {
	case j.State.Terminal():
		return nil
	case j.State == job.Created:
		at, _ := transitionTime(j.Transitions, job.Created)
		if at.IsZero() || now.Sub(at) <= cfg.SubmitDeadline {
			return nil
		}
		return &Failure{
			AdminError: fmt.Sprintf("the job was not handed to the launcher of site %q within %v of its creation (check the launcher plugin and the backend)", j.Input.Cluster, cfg.SubmitDeadline),
			UserError:  "The job could not be started on the compute system. An administrator has been notified.",
		}
	case j.State == job.Canceling:
		at, _ := transitionTime(j.Transitions, job.Canceling)
		if at.IsZero() || now.Sub(at) <= cfg.CancelDeadline {
			return nil
		}
		return &Failure{
			AdminError: fmt.Sprintf("the launcher did not confirm the cancel within %v; check the backend for leftover containers", cfg.CancelDeadline),
			UserError:  "The job could not be canceled cleanly. An administrator has been notified.",
		}
	case j.Launch == nil:
		return nil
	}
	launched, _ := transitionTime(j.Transitions, job.DownloadSubmitted)
	if !j.Launch.LaunchedAt.IsZero() {
		launched = j.Launch.LaunchedAt // a relaunch restarts the clocks
	}
	if st != nil && st.Err != nil {
		if errors.Is(st.Err, launcher.ErrNotFound) {
			return &Failure{
				AdminError: fmt.Sprintf("the launcher of site %q no longer knows the job (handle %s): %v", j.Launch.Site, j.Launch.Handle, st.Err),
				UserError:  "The job's containers vanished from the compute system. An administrator has been notified.",
			}
		}
		st = nil // another per-job error: treat as unknown
	}
	byNum := map[int]launcher.ContainerStatus{}
	if st != nil {
		for _, c := range st.Containers {
			byNum[c.Container] = c
		}
	}
	for _, sj := range subs {
		if sj.State.Terminal() {
			continue // the agent reported its final state; the proc's end does not matter
		}
		n := sj.SubID
		c, known := byNum[n]
		where := fmt.Sprintf("container %d", n)
		if known && c.Attempt != "" {
			where += fmt.Sprintf(" (attempt %s)", c.Attempt)
		}
		code := "none"
		if known && c.ExitCode != nil {
			code = fmt.Sprint(*c.ExitCode)
		}
		if known {
			switch c.State {
			case launcher.StateHeld:
				return &Failure{
					AdminError: fmt.Sprintf("%s is held by the compute system: %s", where, c.Reason),
					UserError:  fmt.Sprintf("The compute system held container %d of the job. An administrator has been notified.", n),
					Retryable:  true,
				}
			case launcher.StateExited:
				if c.ExitCode == nil || *c.ExitCode != 0 {
					return &Failure{
						AdminError: fmt.Sprintf("the agent of %s exited with code %s before reporting the container's final state%s", where, code, suffix(c.Reason)),
						UserError:  fmt.Sprintf("Container %d of the job stopped unexpectedly. An administrator has been notified.", n),
						Retryable:  true,
					}
				}
				if !c.Ended.IsZero() && now.Sub(c.Ended) > cfg.HeartbeatDeadline {
					return &Failure{
						AdminError: fmt.Sprintf("the agent of %s exited with code 0 %v ago, but its final report never arrived (sub-job still %s)", where, since(now, c.Ended), sj.State),
						UserError:  fmt.Sprintf("Container %d of the job stopped unexpectedly. An administrator has been notified.", n),
					}
				}
			case launcher.StateRemoved, launcher.StateUnknown:
				what := "was removed from the compute system"
				if c.State == launcher.StateUnknown {
					what = "vanished from the compute system"
				}
				return &Failure{
					AdminError: fmt.Sprintf("%s %s before its agent reported a final state (exit code %s)%s", where, what, code, suffix(c.Reason)),
					UserError:  fmt.Sprintf("Container %d of the job was removed from the compute system. An administrator has been notified.", n),
				}
			}
		}
		if !sj.LastSeen.IsZero() {
			if now.Sub(sj.LastSeen) > cfg.HeartbeatDeadline {
				return &Failure{
					AdminError: fmt.Sprintf("the agent of %s was last heard from %v ago (deadline %v), in state %s", where, since(now, sj.LastSeen), cfg.HeartbeatDeadline, sj.State),
					UserError:  fmt.Sprintf("The service lost contact with container %d of the job. An administrator has been notified.", n),
					Retryable:  true,
				}
			}
		} else {
			// Never connected. Measure from the proc's start when known; a proc waiting in the
			// queue has the idle deadline.
			from, limit := launched, cfg.ConnectDeadline
			switch {
			case known && c.State == launcher.StateIdle:
				limit = cfg.IdleDeadline
			case known && !c.Started.IsZero():
				from = c.Started
			}
			if !from.IsZero() && now.Sub(from) > limit {
				return &Failure{
					AdminError: fmt.Sprintf("the agent of %s never connected within %v (%s since %s; launcher state %s)", where, limit, since(now, from), from.UTC().Format(time.RFC3339), stateOf(known, c)),
					UserError:  fmt.Sprintf("Container %d of the job never started on the compute system. An administrator has been notified.", n),
					Retryable:  true,
				}
			}
		}
		if ran, ok := transitionTime(sj.Transitions, job.JobSubmitted); ok && j.Input.RuntimeSeconds > 0 && (sj.State == job.JobSubmitted) {
			limit := time.Duration(j.Input.RuntimeSeconds*float64(time.Second)) + cfg.RuntimeGrace
			if now.Sub(ran) > limit {
				return &Failure{
					AdminError: fmt.Sprintf("%s has run for %v, more than its runtime of %vs plus a grace of %v", where, since(now, ran), j.Input.RuntimeSeconds, cfg.RuntimeGrace),
					UserError:  fmt.Sprintf("Container %d of the job exceeded its runtime. An administrator has been notified.", n),
				}
			}
		}
	}
	return nil
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func stateOf(known bool, c launcher.ContainerStatus) string {
	if !known {
		return "unknown"
	}
	return string(c.State)
}

// account records the accounting of jobs that ended recently, once their containers ended.
func (r *Reconciler) account(ctx context.Context) error {
	now := r.now()
	js, err := r.store.JobsToAccount(ctx, now.Add(-r.cfg.AccountingWindow), r.cfg.Limit)
	if err != nil {
		return err
	}
	statuses := r.statuses(ctx, js)
	var errs []error
	for _, j := range js {
		st, ok := statuses[j.ID]
		if !ok {
			continue // the launcher cannot answer now (or has no Status)
		}
		if st.Err != nil && !errors.Is(st.Err, launcher.ErrNotFound) {
			continue
		}
		done := true
		for _, c := range st.Containers {
			done = done && (c.State.Terminal() || c.State == launcher.StateHeld)
		}
		if !done && now.Sub(j.UpdateTime) < r.cfg.AccountingWait {
			continue
		}
		u := launcher.SumUsage(st.Containers)
		if err := r.store.SetAccounting(ctx, j.ID, jobs.Accounting{CPUHours: u.CPUHours, CPUFactor: u.CPUFactor, MaxMemory: u.MaxMemory}); err != nil {
			errs = append(errs, fmt.Errorf("accounting of job %s: %w", j.ID, err))
		}
	}
	return errors.Join(errs...)
}
