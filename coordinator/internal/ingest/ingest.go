// Package ingest owns what the agents report: it builds the assignment an agent receives when
// it connects, applies each agent event to its container exactly once (conditional on the
// container's state and on the event's sequence number within its attempt), and folds the
// containers' states into the job state (fold.go). When every container has ended it writes
// the job's terminal transition: on success the union of the containers' outputs, each
// checked once more in S3 (its stored CRC64/NVME must equal what the agent uploaded); on
// failure the user and admin errors. agentws calls it; launch calls Fold after recording a
// launch, as agents may report before that.
//
// It must not launch or cancel anything, and must not move a job backwards: every write is
// conditional on the state it was computed from.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kbase/cts/coordinator/internal/ctserr"
	"github.com/kbase/cts/coordinator/internal/jobs"
	"github.com/kbase/cts/shared/args"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

// Store is the persistence ingest needs (job transitions go through the Mover).
type Store interface {
	jobs.Getter
	jobs.SubJobGetter
	jobs.SubJobTransitioner
	// GetSubJob returns one sub-job (a point read), or ErrNotFound.
	GetSubJob(ctx context.Context, id string, sub int) (*jobs.SubJob, error)
	// TouchSubJobs records agents' heartbeats (point writes) and returns how many sub-jobs
	// matched (a heartbeat of a replaced attempt or a gone sub-job is dropped).
	TouchSubJobs(ctx context.Context, ts []jobs.Touch) (int, error)
}

// Objects is the S3 access the output verification needs.
type Objects interface {
	// Head returns the object's size and CRC64/NVME (HeadObject with ChecksumMode enabled).
	Head(ctx context.Context, s3path string) (jobs.ObjectMeta, error)
	Streamer
}

// Streamer reads objects (outputs manifests).
type Streamer interface {
	// Stream writes the object's bytes (from seek, length bytes or to the end when 0) to the
	// writer w returns (objects.Objects.Stream).
	Stream(ctx context.Context, s3path string, seek, length int64, w func(size int64) io.Writer) error
}

// Config is ingest's configuration.
type Config struct {
	// LogDir is "bucket/prefix/" under which container logs go, in <LogDir><job_id>/.
	LogDir string
	// HeadConcurrency bounds the HeadObject calls of one output verification (default 10).
	HeadConcurrency int
}

// Service applies agent reports. It is safe for concurrent use.
type Service struct {
	cfg     Config
	store   Store
	mover   *jobs.Mover
	objects Objects
	log     *slog.Logger
	folds   folds
	views   *views
}

// New returns a Service; job transitions go through mover.
func New(cfg Config, store Store, mover *jobs.Mover, objects Objects, log *slog.Logger) *Service {
	if cfg.HeadConcurrency <= 0 {
		cfg.HeadConcurrency = 10
	}
	if cfg.LogDir != "" && !strings.HasSuffix(cfg.LogDir, "/") {
		cfg.LogDir += "/"
	}
	return &Service{cfg: cfg, store: store, mover: mover, objects: objects, log: log, folds: folds{jobs: map[string]*foldQueue{}}, views: newViews()}
}

// NoLaunch is the launch attempt of an agent that has no credential: an admin's dry run,
// which may read its assignment and do nothing else.
const NoLaunch = -1

// Agent is who reports: the container and attempt of its hello and the launch attempt its
// credential was minted for (NoLaunch: none).
type Agent struct {
	JobID     string
	Container int
	Attempt   string
	Launch    int
	// Known, when set (one per agent session), carries the job between the session's events:
	// see KnownJob.
	Known *KnownJob
}

// KnownJob is the job as an agent session's first applied event read it. From then on the
// job's input cannot change, nor its launch attempt (a job is relaunched only while none of
// its containers has moved, and this session's has), so the session's later events need no
// read of the job: on a store answering a few hundred operations a second, that read was a
// fifth of an event's cost. Its state is not used: it may be behind. Not safe for concurrent
// use (a session applies one event at a time).
type KnownJob struct {
	job *jobs.Job
}

// currentLaunch is the job's launch attempt (0 before the launch is recorded: agents may
// connect before that).
func currentLaunch(j *jobs.Job) int {
	if j.Launch == nil {
		return 0
	}
	return j.Launch.Attempt
}

// Assignment builds what the agent of one container needs. It refuses (with a
// *ctserr.Error) unknown jobs and containers, jobs and containers that are already over
// (except for the agent attempt that finished the container: its replay is acknowledged), a
// credential of another launch of the job (launch; NoLaunch for a dry run), and a new agent
// attempt for a container another attempt has started.
func (s *Service) Assignment(ctx context.Context, h protocol.Hello, launch int) (*protocol.Assignment, error) {
	j, err := s.store.GetJob(ctx, h.JobID)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil, ctserr.New(ctserr.CodeNoSuchJob, "No job with ID '%s' exists", h.JobID)
	}
	if err != nil {
		return nil, err
	}
	// A canceling job still takes its agents' hellos: an agent that reconnects during the
	// cancel must be able to report how its container ended. A finished job takes only the
	// replay of the agent attempt that finished its container (below).
	if h.Container < 0 || h.Container >= j.Input.NumContainers {
		return nil, ctserr.New(ctserr.CodeNoSuchSubJob, "Job %s has no container %d", j.ID, h.Container)
	}
	if launch != NoLaunch && launch != currentLaunch(j) {
		return nil, ctserr.New(ctserr.CodeUnauthorized, "The agent's credential is for launch attempt %d of job %s, which was launched again (attempt %d)",
			launch, j.ID, currentLaunch(j))
	}
	// One point read: a hello of a job of n containers must not read the other n-1.
	sj, err := s.store.GetSubJob(ctx, j.ID, h.Container)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil, ctserr.New(ctserr.CodeNoSuchSubJob, "Job %s has no container %d", j.ID, h.Container)
	}
	if err != nil {
		return nil, err
	}
	// The agent attempt that finished the container may reconnect (its final event was
	// applied but the acknowledgement lost, or its process restarted with the event in its
	// journal): the assignment's NextSeq acknowledges what was applied, and anything newer it
	// sends is refused as usual.
	replay := !h.DryRun && sj.State.Terminal() && sj.Attempt != "" && sj.Attempt == h.Attempt
	if j.State.Terminal() && !replay {
		return nil, ctserr.New(ctserr.CodeInvalidJobState, "Job %s is %s", j.ID, j.State)
	}
	if sj.State.Terminal() && !replay {
		return nil, ctserr.New(ctserr.CodeInvalidJobState, "Container %d of job %s is %s", h.Container, j.ID, sj.State)
	}
	if !h.DryRun && sj.Attempt != "" && sj.Attempt != h.Attempt && sj.State != job.DownloadSubmitted {
		// One container, one agent: a second attempt (a made-up one, or a copy of the
		// agent) may not take over a container another attempt started.
		return nil, ctserr.New(ctserr.CodeUnauthorized, "Container %d of job %s is run by agent attempt %s, not %s",
			h.Container, j.ID, sj.Attempt, h.Attempt)
	}
	a, err := BuildAssignment(j, h.Container, s.cfg.LogDir, nextSeq(sj, h.Attempt))
	if err != nil {
		return nil, err
	}
	// The agent checks these before it downloads anything: a new attempt starts only a
	// container that no agent has started.
	a.ContainerState, a.ContainerAttempt = sj.State, sj.Attempt
	return a, nil
}

func nextSeq(sj *jobs.SubJob, attempt string) int64 {
	if sj.Attempt == attempt {
		return sj.LastSeq + 1
	}
	return 1
}

// BuildAssignment computes a container's assignment from its job: its slice of the inputs
// with their container paths, the generated command and environment, mounts and limits.
func BuildAssignment(j *jobs.Job, container int, logDir string, next int64) (*protocol.Assignment, error) {
	in := &j.Input
	rel, err := in.Placements()
	if err != nil {
		return nil, err
	}
	slices := in.FilesPerContainer()
	if container >= len(slices) {
		return nil, fmt.Errorf("container %d out of range", container)
	}
	var inputs []protocol.InputFile
	var paths []string
	for _, idx := range slices[container] {
		f := in.InputFiles[idx]
		var size int64
		if idx < len(j.InputSizes) {
			size = j.InputSizes[idx]
		}
		inputs = append(inputs, protocol.InputFile{S3Path: f.File, CRC64NVME: f.CRC64NVME, Size: size, RelPath: rel[idx]})
		paths = append(paths, path.Join(in.Params.InputMountPoint, rel[idx]))
	}
	cmd, env, err := args.Generate(j.Image.Entrypoint, in.Params, container, paths)
	if err != nil {
		return nil, fmt.Errorf("generate arguments: %w", err)
	}
	refMount := in.Params.RefdataMountPoint
	if refMount == "" {
		refMount = j.Image.DefaultRefdataMountPoint
	}
	a := &protocol.Assignment{
		JobID: j.ID, Container: container, Image: j.Image.NameWithDigest(), Command: cmd, Env: env,
		Inputs: inputs, InputMountPoint: in.Params.InputMountPoint, OutputMountPoint: in.Params.OutputMountPoint,
		OutputDir: folder(in.OutputDir), Declobber: in.Params.Declobber,
		LogDir: strings.TrimSuffix(logDir, "/") + "/" + j.ID + "/",
		CPUs:   in.CPUs, MemoryBytes: in.Memory, RuntimeSeconds: in.RuntimeSeconds,
		NextSeq: next,
	}
	if j.Image.RefdataID != "" {
		a.RefdataID, a.RefdataMountPoint = j.Image.RefdataID, refMount
	}
	return a, nil
}

// folder returns an output folder with its trailing "/": records made before submissions
// normalised it lack it, and the agents append file names to it.
func folder(dir string) string {
	if dir == "" || strings.HasSuffix(dir, "/") {
		return dir
	}
	return dir + "/"
}

// ErrRejected marks an agent event the coordinator will not apply (illegal for the
// container's state); the agent must stop reporting.
var ErrRejected = errors.New("event rejected")

// ApplyEvent applies one event of agent a to its container exactly once and folds the result
// into the job. It returns nil for an event that was already applied (a resend), and an error
// wrapping ErrRejected for an event that can never apply: an illegal state for the container
// (states only move forward), an agent of another launch or another attempt than the one that
// started the container, outputs outside the job's output folder, or malformed fields.
func (s *Service) ApplyEvent(ctx context.Context, a Agent, ev protocol.Event) error {
	jobID, container, attempt := a.JobID, a.Container, a.Attempt
	if a.Launch == NoLaunch {
		return fmt.Errorf("%w: an agent without a credential may not report", ErrRejected)
	}
	if !ev.State.Valid() || ev.State == job.Created || ev.State == job.DownloadSubmitted {
		return fmt.Errorf("%w: state %q", ErrRejected, ev.State)
	}
	if (ev.State == job.UploadSubmitting || ev.State == job.ErrorProcessingSubmitting) && ev.ExitCode == nil {
		return fmt.Errorf("%w: %s needs the container's exit code", ErrRejected, ev.State)
	}
	var j *jobs.Job
	if a.Known != nil && a.Known.job != nil && a.Known.job.ID == jobID {
		j = a.Known.job
	} else {
		var err error
		j, err = s.store.GetJob(ctx, jobID)
		if errors.Is(err, jobs.ErrNotFound) {
			return fmt.Errorf("%w: no job %s", ErrRejected, jobID)
		}
		if err != nil {
			return err
		}
		s.views.setState(jobID, j.State)
	}
	if a.Launch != currentLaunch(j) {
		return fmt.Errorf("%w: the agent's credential is for launch attempt %d, the job runs attempt %d", ErrRejected, a.Launch, currentLaunch(j))
	}
	if err := checkEvent(s.cfg.LogDir, j, container, &ev); err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	var from []job.State
	for _, st := range job.States {
		if job.CanTransitionContainer(st, ev.State) {
			from = append(from, st)
		}
	}
	at := ev.Time.UTC().Truncate(time.Millisecond)
	if at.IsZero() || at.After(jobs.Now().Add(time.Minute)) {
		at = jobs.Now()
	}
	u := jobs.SubJobUpdate{ExitCode: ev.ExitCode, Error: ev.Error, AdminError: ev.AdminError, Traceback: ev.Traceback}
	for _, o := range ev.Outputs {
		u.Outputs = append(u.Outputs, jobs.Output{File: o.File, CRC64NVME: o.CRC64NVME})
	}
	if m := ev.OutputsManifest; m != nil {
		u.OutputsManifest = &jobs.Manifest{Container: container, File: m.File, Count: m.Count, Size: m.Size, CRC64NVME: m.CRC64NVME}
	}
	if ev.State == job.Error && u.AdminError == "" {
		u.AdminError = "the agent reported an error without details"
	}
	sj, err := s.store.TransitionSubJob(ctx, jobID, container, from, jobs.Transition{State: ev.State, Time: at}, u, jobs.Seq{Attempt: attempt, Seq: ev.Seq})
	if errors.Is(err, jobs.ErrConflict) {
		sj, gerr := s.store.GetSubJob(ctx, jobID, container)
		if errors.Is(gerr, jobs.ErrNotFound) {
			return fmt.Errorf("%w: no container %d in job %s", ErrRejected, container, jobID)
		}
		if gerr != nil {
			return gerr
		}
		s.views.update(sj)
		if sj.Attempt == attempt && sj.LastSeq >= ev.Seq {
			// Already applied: a resend. Fold anyway: the fold after the first application
			// may have failed (the agent was then not acknowledged and resends), and without
			// this fold a job whose last event it was never ends.
			a.Known.keep(j)
			return s.Fold(ctx, jobID)
		}
		if sj.Attempt != "" && sj.Attempt != attempt {
			return fmt.Errorf("%w: container %d of job %s is run by agent attempt %s, not %s", ErrRejected, container, jobID, sj.Attempt, attempt)
		}
		return fmt.Errorf("%w: container %d of job %s is %s, cannot move to %s", ErrRejected, container, jobID, sj.State, ev.State)
	}
	if errors.Is(err, jobs.ErrNotFound) {
		return fmt.Errorf("%w: no container %d in job %s", ErrRejected, container, jobID)
	}
	if err != nil {
		return err
	}
	a.Known.keep(j)
	s.views.update(sj)
	return s.Fold(ctx, jobID)
}

// keep records what the session's later events need of j (its ID, launch attempt and output
// folder: checkEvent, currentLaunch) once an event of the session was applied; k may be nil
// (nothing kept). Not the whole job: its input lists every container's files, and thousands
// of sessions each keeping a copy cost tens of KiB per connected agent.
func (k *KnownJob) keep(j *jobs.Job) {
	if k == nil || (k.job != nil && k.job.ID == j.ID) {
		return
	}
	small := &jobs.Job{ID: j.ID}
	small.Input.OutputDir = j.Input.OutputDir
	small.Input.Params.Declobber = j.Input.Params.Declobber
	if j.Launch != nil {
		small.Launch = &jobs.Launch{Site: j.Launch.Site, Handle: j.Launch.Handle, Attempt: j.Launch.Attempt}
	}
	k.job = small
}

// Ended reports whether this process knows container c of job id to have ended: what its
// events and folds learned shows the sub-job terminal (never ahead of the store; false when
// it does not know).
func (s *Service) Ended(id string, c int) bool { return s.views.ended(id, c) }

// Touch records agents' heartbeats (see Store.TouchSubJobs).
func (s *Service) Touch(ctx context.Context, ts []jobs.Touch) (int, error) {
	return s.store.TouchSubJobs(ctx, ts)
}

// Fold advances the job as far as its containers allow, from what the store holds when it is
// called or later. Concurrent calls for one job share folds (folds.go): one runs at a time,
// and the callers that arrive meanwhile wait for the one next run, which reads after all of
// them.
func (s *Service) Fold(ctx context.Context, id string) error {
	return s.folds.do(ctx, id, s.fold)
}

// fold is one fold of the job. Concurrent folds of one job are safe: transitions are
// conditional, and a loser re-reads and recomputes.
//
// It first asks the job's view (views.go) for a sub-job that keeps the job where it is and
// reads that one again: if it still does, the job cannot move and the fold ends there, at the
// cost of two point reads. Otherwise, for a step with one way out (download_submitted,
// job_submitting), it moves from the view; for the others it reads every sub-job and moves
// from that read.
//
// After a move it folds on from the job the move returned and the containers it read: a move
// changes no container, and a container that changed meanwhile is folded by the caller that
// changed it, which reads after its change (the trivial job's events each cost three reads
// fewer).
func (s *Service) fold(ctx context.Context, id string) error {
	// From a state the job was in, without reading the job (views.states).
	if st := s.views.state(id); st != "" {
		if !mayFold(st) && st != job.Created {
			return nil // canceling or ended: final
		}
		if mayFold(st) {
			blocked, err := s.blocked(ctx, id, st)
			if err != nil || blocked {
				return err
			}
		}
	}
	var (
		j    *jobs.Job
		subs []jobs.SubJob
		err  error
		// fromView: subs are the job's view, not a read (a step that has one way out only).
		fromView, mustRead bool
	)
	for range 20 {
		if j == nil {
			if j, err = s.store.GetJob(ctx, id); err != nil {
				return err
			}
			if !mayFold(j.State) {
				s.views.drop(id)
				return nil
			}
			s.views.setState(id, j.State)
			subs = nil
		}
		if subs == nil {
			blocked, err := s.blocked(ctx, id, j.State)
			if err != nil || blocked {
				return err
			}
			// No container blocks the job's current step, as its view shows and a read of
			// each container the view showed blocking confirmed. A view is never ahead of the
			// store, so the store has no blocker either; and a step with one way out moves to
			// the same state at the same time from the view as from a read (the times its
			// containers reached a state never change). Anything else reads every container.
			if fromView = !mustRead && oneWayOut(j.State); fromView {
				subs = s.views.complete(id, j.Input.NumContainers)
				fromView = subs != nil
			}
			if !fromView {
				if subs, err = s.store.GetSubJobs(ctx, id); err != nil {
					return err
				}
				s.views.put(id, subs)
			}
		}
		f := NextFold(j.State, subs)
		if f.To == "" {
			return nil
		}
		if f.Terminal && fromView {
			// The terminal bookkeeping needs the containers' outputs and errors.
			subs, mustRead = nil, true
			continue
		}
		var u jobs.JobUpdate
		if f.Terminal {
			u, f.To = s.terminalUpdate(ctx, j, subs, f.To)
		}
		// Conditional on the state the fold was computed from: Error may follow canceling,
		// so with Predecessors(Error) a cancel accepted meanwhile would be overwritten.
		moved, err := s.mover.MoveFrom(ctx, id, []job.State{j.State}, f.To, f.Time, u)
		if errors.Is(err, jobs.ErrConflict) {
			j, subs = nil, nil // moved by someone else: read again
			continue
		}
		if err != nil {
			return err
		}
		if f.To.Terminal() {
			s.views.drop(id)
			s.log.InfoContext(ctx, "job ended", "job_id", id, "state", f.To, "error", u.AdminError)
			return nil
		}
		j = moved // nil (a mover that returns no job) reads again
		if j != nil {
			s.views.setState(id, j.State)
		}
		if fromView {
			subs = nil // the next step starts from the blockers again
		}
	}
	return fmt.Errorf("fold job %s: too many concurrent updates", id)
}

// blocked reports whether a sub-job of job id, read now, keeps the job in state (a state it
// was in) where it is. It tries the sub-jobs its view shows as blocking, in order, reading
// each again until one still blocks (true) or none is left (false: the job may move). Without
// a view it reports false.
func (s *Service) blocked(ctx context.Context, id string, state job.State) (bool, error) {
	for from := 0; ; {
		n, ok := s.views.nextBlocker(id, state, from)
		if !ok {
			return false, nil
		}
		sj, err := s.store.GetSubJob(ctx, id, n)
		if err != nil {
			return false, err
		}
		s.views.update(sj)
		if blocks(state, *sj) {
			return true, nil
		}
		from = n + 1
	}
}

const (
	userErrExit       = "At least one container exited with a non-zero error code. Please examine the logs for details."
	userErrUnexpected = "An unexpected error occurred."
)

// terminalUpdate computes the fields of a job's terminal transition: on success the verified
// union of the containers' outputs (which may still turn the job into an error), on failure
// the user and admin errors.
func (s *Service) terminalUpdate(ctx context.Context, j *jobs.Job, subs []jobs.SubJob, to job.State) (jobs.JobUpdate, job.State) {
	logPath := jobs.LogPath(s.cfg.LogDir, j.ID, subs)
	if to == job.Complete && hasManifest(subs) {
		outs, mans, n, err := s.verifyManifests(ctx, j, subs)
		var ce *collisionError
		var me *manifestError
		switch {
		case errors.As(err, &ce):
			return jobs.JobUpdate{Error: ce.userMessage(), AdminError: err.Error(), LogPath: logPath}, job.Error
		case errors.As(err, &me):
			return jobs.JobUpdate{Error: fmt.Sprintf("The list of output files container %d reported failed verification (it is not the list its agent sealed, or names files outside the job's output folder). "+
				"Submit the job again; if it fails again, tell the service's admins.", me.Container), AdminError: err.Error(), LogPath: logPath}, job.Error
		case err != nil:
			return jobs.JobUpdate{Error: "The job's output files failed verification: " + outputOf(err) +
				" is not in S3 as the container uploaded it. Submit the job again; if it fails again, tell the service's admins.", AdminError: err.Error(), LogPath: logPath}, job.Error
		}
		return jobs.JobUpdate{Outputs: outs, OutputsManifests: mans, OutputFileCount: &n, LogPath: logPath}, job.Complete
	}
	if to == job.Complete {
		outs, err := s.verifyOutputs(ctx, subs)
		var ce *collisionError
		switch {
		case errors.As(err, &ce):
			return jobs.JobUpdate{Error: ce.userMessage(), AdminError: err.Error(), LogPath: logPath}, job.Error
		case err != nil:
			return jobs.JobUpdate{Error: "The job's output files failed verification: " + outputOf(err) +
				" is not in S3 as the container uploaded it. Submit the job again; if it fails again, tell the service's admins.", AdminError: err.Error(), LogPath: logPath}, job.Error
		}
		if len(outs) == 0 {
			msg := "The job produced no output files"
			return jobs.JobUpdate{Error: msg, AdminError: msg, LogPath: logPath}, job.Error
		}
		n := len(outs)
		return jobs.JobUpdate{Outputs: outs, OutputFileCount: &n, LogPath: logPath}, job.Complete
	}
	var admin []string
	userErr := ""
	nonZero := false
	for _, sj := range subs {
		if sj.ExitCode != nil && *sj.ExitCode != 0 {
			nonZero = true
		}
		if sj.AdminError != "" {
			admin = append(admin, fmt.Sprintf("container %d: %s", sj.SubID, sj.AdminError))
		}
		if userErr == "" && sj.Error != "" {
			userErr = sj.Error
		}
	}
	switch {
	case nonZero && userErr != "":
		// The agent named why the system stopped a container (its memory or runtime limit,
		// the image): that sentence says more than the exit code's.
	case nonZero:
		userErr = exitCodeError(j.ID, subs)
	case userErr == "":
		userErr = userErrUnexpected
	}
	if len(admin) == 0 {
		admin = []string{"Check subjobs / containers for admin errors"}
	}
	return jobs.JobUpdate{Error: userErr, AdminError: strings.Join(admin, "; "), LogPath: logPath}, job.Error
}

// maxNamedContainers is how many failed containers the exit-code message names.
const maxNamedContainers = 3

// exitCodeError is the user's error of a job whose containers exited non-zero: the Python
// service's sentence, then which containers exited with which code and the command that
// shows their error output.
func exitCodeError(id string, subs []jobs.SubJob) string {
	var named []string
	first := -1
	failed := 0
	for _, sj := range subs {
		if sj.ExitCode == nil || *sj.ExitCode == 0 {
			continue
		}
		failed++
		if first < 0 {
			first = sj.SubID
		}
		if len(named) < maxNamedContainers {
			named = append(named, fmt.Sprintf("container %d exited with code %d", sj.SubID, *sj.ExitCode))
		}
	}
	msg := userErrExit + " " + strings.ToUpper(named[0][:1]) + named[0][1:]
	if len(named) > 1 {
		msg += ", " + strings.Join(named[1:], ", ")
	}
	if failed > len(named) {
		msg += fmt.Sprintf(" (and %d more)", failed-len(named))
	}
	return msg + fmt.Sprintf(". Its error output: cts logs %s --container %d --stderr (or GET /jobs/%s/log/%d/stderr).", id, first, id, first)
}

// collisionError: two containers uploaded the same output file with different contents.
type collisionError struct {
	File string
	A, B int // the containers
}

func (e *collisionError) Error() string {
	return fmt.Sprintf("containers %d and %d wrote different contents to %s", e.A, e.B, e.File)
}

func (e *collisionError) userMessage() string {
	return fmt.Sprintf("Containers %d and %d both wrote the output file %s, with different contents, so neither was kept as the job's output. "+
		"Set \"declobber\": true in params (each container's outputs then go to <output_dir>/<container number>/), "+
		"or put the container number in the file name with a container_number parameter.", e.A, e.B, e.File)
}

// outputErrorRE finds the output a verification error is about.
var outputErrorRE = regexp.MustCompile(`output (\S+)`)

// outputOf names the output file of a verification error, or "an output file".
func outputOf(err error) string {
	if m := outputErrorRE.FindStringSubmatch(err.Error()); m != nil {
		return strings.TrimSuffix(m[1], ":")
	}
	return "an output file"
}

// verifyOutputs checks every output the containers reported against S3: it must exist with the
// CRC64/NVME the agent computed while uploading.
func (s *Service) verifyOutputs(ctx context.Context, subs []jobs.SubJob) ([]jobs.Output, error) {
	byFile := map[string]jobs.Output{}
	writer := map[string]int{}
	var order []string
	for _, sj := range subs {
		for _, o := range sj.Outputs {
			if prev, ok := byFile[o.File]; ok {
				if prev.CRC64NVME != o.CRC64NVME {
					return nil, &collisionError{File: o.File, A: writer[o.File], B: sj.SubID}
				}
				continue
			}
			byFile[o.File] = o
			writer[o.File] = sj.SubID
			order = append(order, o.File)
		}
	}
	outs := make([]jobs.Output, len(order))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.HeadConcurrency)
	for i, f := range order {
		g.Go(func() error {
			meta, err := s.objects.Head(gctx, f)
			if err != nil {
				return fmt.Errorf("check output %s: %w", f, err)
			}
			if meta.CRC64NVME != byFile[f].CRC64NVME {
				return fmt.Errorf("output %s has CRC64/NVME %q in S3, but the agent uploaded %q", f, meta.CRC64NVME, byFile[f].CRC64NVME)
			}
			outs[i] = byFile[f]
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return outs, nil
}
