// Package launch owns the launched part of a job's life: handing created jobs to their site's
// launcher (the submitter), cancel (canceling → canceled, with the agents told and the
// launcher's containers removed), relaunching a job whose containers failed for an
// infrastructure reason before any ran, ending a job that can no longer finish (FailJob, for
// the reconciler), the launcher's raw view of a container (RunnerStatus), cleaning up what an
// ended job left at its site (Clean, RunCleaner), the sites' launcher plugin processes
// (Plugins, supervised), and reference data staging tasks, the second kind of launched work
// (staging.go: launched by the same submitter pass, failed or restaged by the reconciler,
// recovered and cleaned by admins).
//
//	created ──submitter──► download_submitted ──(agents, package ingest)──► ...
//	   │                        │  RetryLaunch: attempt n+1 while nothing ran
//	   └──── Cancel ────► canceling ──submitter: agents told, launcher Cancel──► canceled
//	                 FailJob (reconciler): any non-terminal state ──► error
//
// Every loop here is a sequence of passes (Pass, CleanPass) that may run on several
// coordinators at once: each job move is a conditional update, and the launcher's Submit is
// idempotent per (job, attempt), so two passes racing on one job launch it once. A runner that
// holds a lease can call the passes itself instead of RunSubmitter and RunCleaner. Everything
// a launch attempt carries to its agents (the worker environment) is built in one place,
// request, for one job and attempt.
//
// It must not apply agent events or fold sub-job states (package ingest does; launch calls
// its Fold after recording a launch, as agents may have reported before).
package launch

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/kbase/cts/coordinator/internal/agentcred"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/coordinator/internal/signals"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/launcher"
)

// Launcher is the part of a site's launcher this package uses (shared/launcher semantics:
// Submit idempotent per (JobID, Attempt), Cancel idempotent, a job the launcher does not know
// is launcher.ErrNotFound). Status and Cleanup are optional capabilities (StatusLauncher,
// cleaner): launcher.Client has both.
type Launcher interface {
	Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error)
	Cancel(ctx context.Context, ref launcher.JobRef) error
}

// StatusLauncher is the optional Status capability of a site's launcher.
type StatusLauncher interface {
	Status(ctx context.Context, refs []launcher.JobRef) ([]launcher.JobStatus, error)
}

// Site is a compute site as launch sees it: its launcher and the environment of its agents.
type Site struct {
	Name     string
	Launcher Launcher
	// WorkerEnv is added to the environment of every agent of the site (TOKEN_PATH,
	// S3_SECRET_PATH, REFDATA_HOST_PATH, ...: file paths on the workers, never secrets).
	WorkerEnv map[string]string
}

// Store is the persistence launch needs (job transitions go through the Mover).
type Store interface {
	jobs.Getter
	jobs.SubJobGetter
	jobs.SubJobTransitioner
	jobs.StateLister
	// UpdateLaunch replaces the launch record of job id if the job is still in state and its
	// current launch attempt is attempt; ErrConflict otherwise.
	UpdateLaunch(ctx context.Context, id string, state job.State, attempt int, l jobs.Launch) error
	// SetCleaned marks a terminal job cleaned; ErrConflict if it is not terminal, ErrNotFound
	// if no such job.
	SetCleaned(ctx context.Context, id string) error
	// DirtyJobs returns up to limit terminal jobs not yet cleaned whose UpdateTime is before
	// olderThan, oldest first, without outputs and input files.
	DirtyJobs(ctx context.Context, olderThan time.Time, limit int) ([]*jobs.Job, error)
}

// Folder folds a job's sub-job states into its state (*ingest.Service).
type Folder interface {
	Fold(ctx context.Context, id string) error
}

// Config is launch's configuration.
type Config struct {
	// ServiceURL is the root URL agents use to reach the coordinator.
	ServiceURL string
	// S3URL and S3AccessKey are handed to agents (the secret is a file on the worker).
	S3URL       string
	S3AccessKey string
	S3Insecure  bool
	// LogDir is "bucket/prefix/" under which container logs go, in <LogDir><job_id>/.
	LogDir string
	// SubmitInterval is how often the submitter looks for created jobs without a poke
	// (default 5 s).
	SubmitInterval time.Duration
	Sites          []Site
	// Credentials mints each container's launch credential, handed to the launcher with the
	// job (nil: none, and agents cannot report: tests of the launch alone).
	Credentials *agentcred.Keyring
	// CredentialSlack is how long a launch credential outlives the job's runtime: the time a
	// container may wait in the backend's queue and be late (the reconciler's idle deadline
	// and runtime grace; default DefaultCredentialSlack).
	CredentialSlack time.Duration
	// StagingCredentialTTL is how long a staging task's credential is valid: the time it may
	// wait in the backend's queue and stage (default DefaultCredentialSlack).
	StagingCredentialTTL time.Duration
}

// DefaultCredentialSlack is the default CredentialSlack and StagingCredentialTTL: longer than
// the reconciler lets a container wait in a queue or a staging run.
const DefaultCredentialSlack = 8 * 24 * time.Hour

// Deps are launch's collaborators.
type Deps struct {
	Store Store
	// Mover writes the job transitions.
	Mover *jobs.Mover
	// Fold is called after a launch was recorded.
	Fold Folder
	// Stagings are the reference data staging records (nil: no staging).
	Stagings Stagings
	// Signals carries the stop signals (a cancel, FailJob) to the agent sessions of every
	// replica and the submitter's pokes to the replica running it (nil: this process only).
	Signals *signals.Bus
	Log     *slog.Logger
}

// Service launches jobs and reference data stagings, and takes them back. It is safe for
// concurrent use.
type Service struct {
	cfg      Config
	store    Store
	mover    *jobs.Mover
	fold     Folder
	stagings Stagings
	log      *slog.Logger
	sites    map[string]*Site
	wake     chan struct{}
	bus      *signals.Bus
}

// New returns a Service.
func New(cfg Config, d Deps) *Service {
	if cfg.SubmitInterval <= 0 {
		cfg.SubmitInterval = 5 * time.Second
	}
	if cfg.CredentialSlack <= 0 {
		cfg.CredentialSlack = DefaultCredentialSlack
	}
	if cfg.StagingCredentialTTL <= 0 {
		cfg.StagingCredentialTTL = DefaultCredentialSlack
	}
	if cfg.LogDir != "" && !strings.HasSuffix(cfg.LogDir, "/") {
		cfg.LogDir += "/"
	}
	s := &Service{
		cfg: cfg, store: d.Store, mover: d.Mover, fold: d.Fold, stagings: d.Stagings, log: d.Log,
		sites: map[string]*Site{},
		wake:  make(chan struct{}, 1),
		bus:   d.Signals,
	}
	if s.bus == nil {
		s.bus = signals.New(signals.Config{}, nil, "", d.Log)
	}
	for i := range cfg.Sites {
		s.sites[cfg.Sites[i].Name] = &cfg.Sites[i]
	}
	return s
}

// Refold folds job id's sub-job states into its state (the reconciler's repair of a job whose
// containers all ended while its own fold failed). Without a Folder it does nothing.
func (s *Service) Refold(ctx context.Context, id string) error {
	if s.fold == nil {
		return nil
	}
	return s.fold.Fold(ctx, id)
}

// SiteLauncher returns the launcher of the named site.
func (s *Service) SiteLauncher(name string) (Launcher, bool) {
	site, ok := s.sites[name]
	if !ok {
		return nil, false
	}
	return site.Launcher, true
}
