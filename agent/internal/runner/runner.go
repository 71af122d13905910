// Package runner is the agent's state machine for one container of a job:
//
//	download (verify CRC64/NVME) ─► job_submitting ─► pull image ─► run ─► job_submitted
//	  exit 0:  upload_submitting ─► upload_submitted ─► (outputs + logs uploaded) ─► complete
//	  exit ≠0: error_processing_submitting ─► error_processing_submitted ─► (logs) ─► error
//	  system failure at any point, cancel, or shutdown ─► (logs, if the container ran) ─► error
//
// Each phase is a function returning an error; one deferred finaliser derives the terminal
// event from how the run ended (the user's container failed, the system failed, the job was
// canceled, the agent is shutting down), recovers panics as system errors, uploads the
// container logs whenever the container ran, and always sends the final report. It never
// talks to S3 or the container runtime except through the interfaces it owns.
//
// The states before the final one only record progress: the runner sends them (Reporter.Send,
// in order, journaled) and goes on without waiting for the coordinator's acknowledgement.
// It waits for one acknowledgement only, the final event's, which covers every event before
// it (Reporter.Report). A refusal of any event (Reporter.Refused) stops the run at once like a
// cancel: the container is stopped and removed, and nothing more is uploaded or reported.
package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kbase/cts/agent/internal/container"
	"github.com/kbase/cts/agent/internal/logstream"
	"github.com/kbase/cts/shared/checksum"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/manifest"
	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/shared/s3path"
	"github.com/kbase/cts/shared/transfer"
)

// Reporter delivers state events to the coordinator, exactly once and in order.
type Reporter interface {
	// Send hands ev over for delivery after every event sent before it and returns without
	// waiting for the coordinator's acknowledgement. It fails when nothing more can be
	// delivered (the coordinator refused the agent).
	Send(ctx context.Context, ev protocol.Event) error
	// Report delivers ev and returns once the coordinator acknowledged it and every event
	// sent before it. On an ended ctx it only records ev (for a later process to deliver).
	Report(ctx context.Context, ev protocol.Event) error
	// Refused is closed once the coordinator refused the agent (it rejected an event): every
	// later Send and Report fails with the refusal.
	Refused() <-chan struct{}
}

// Transfers moves files between S3 and this node with verification.
type Transfers interface {
	DownloadAll(ctx context.Context, ds []transfer.Download) error
	UploadAll(ctx context.Context, us []transfer.Upload) ([]transfer.Uploaded, error)
}

// Config holds the runner's settings.
type Config struct {
	// WorkDir is this container's private directory (inputs, outputs, logs).
	WorkDir string
	// Attempt names this run (used in the runtime container ID).
	Attempt string
	// HostPath maps a local path to the path the container runtime sees (identity unless the
	// agent itself runs in a container).
	HostPath func(string) string
	// Network is "none" or "host".
	Network string
	// RefdataHostPath is the node's reference data root (REFDATA_HOST_PATH): an assignment
	// with a refdata ID gets <RefdataHostPath>/<refdata ID> mounted read-only.
	RefdataHostPath string
	// KillGrace is the TERM→KILL grace when stopping the container.
	KillGrace time.Duration
	// FinalTimeout bounds the log upload and final report once the run's context is canceled
	// (a cancel or shutdown); a run that ends by itself reports with no bound but the
	// Reporter's own.
	FinalTimeout time.Duration
	// LiveLog, when set, receives the container's output lines as they come, rate-limited
	// (logstream); the log files keep everything regardless.
	LiveLog logstream.Sink
	// LiveLogLimits bounds the live lines per stream (logstream defaults when zero).
	LiveLogLimits logstream.Config
	// Hurry, when closed (a second stop signal), makes the finaliser skip the log upload and
	// give the final report only HurryTimeout.
	Hurry <-chan struct{}
	// HurryTimeout bounds the final report once Hurry is closed (default 5 s).
	HurryTimeout time.Duration
	// Progress, when set, receives the progress of the input download and of the output
	// upload: when each starts, at most once per ProgressInterval while bytes move, and when
	// it ends. Bytes are counted only when the transfer client's OnProgress calls
	// Runner.TransferProgress.
	Progress ProgressSink
	// ProgressInterval is the least time between two progress reports of a phase (default 1 s).
	ProgressInterval time.Duration
	// LogMaxBytes bounds each of the container's log files (DefaultLogMaxBytes when 0): output
	// past it is dropped, with a note at the end of the file.
	LogMaxBytes int64
	// Unreachable, when closed, says the coordinator stayed unreachable for the agent's bound
	// (the session's ReconnectFor): the run stops its container and ends with ErrUnreachable,
	// its final event only journaled (see Run).
	Unreachable <-chan struct{}
}

// DefaultLogMaxBytes bounds each container log file when Config.LogMaxBytes is 0 (1 GB).
const DefaultLogMaxBytes = 1_000_000_000

// Runner runs one container.
type Runner struct {
	cfg      Config
	report   Reporter
	xfer     Transfers
	runtime  container.Runtime
	log      *slog.Logger
	canceled <-chan protocol.Cancel
	meter    *meter
}

// New returns a Runner. canceled delivers the coordinator's cancel of the job.
func New(cfg Config, rep Reporter, xfer Transfers, rt container.Runtime, canceled <-chan protocol.Cancel, log *slog.Logger) *Runner {
	if cfg.HostPath == nil {
		cfg.HostPath = func(p string) string { return p }
	}
	if cfg.FinalTimeout <= 0 {
		cfg.FinalTimeout = 10 * time.Minute
	}
	if cfg.HurryTimeout <= 0 {
		cfg.HurryTimeout = 5 * time.Second
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}
	if cfg.LogMaxBytes <= 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	return &Runner{cfg: cfg, report: rep, xfer: xfer, runtime: rt, log: log, canceled: canceled,
		meter: &meter{sink: cfg.Progress, interval: cfg.ProgressInterval}}
}

// Outcome kinds: how a run ended.
type endKind int

const (
	endSuccess     endKind = iota
	endUserError           // the container exited non-zero
	endSystem              // download, pull, runtime, upload or report failed
	endCanceled            // the job was canceled
	endShutdown            // this agent was told to stop (SIGTERM: removal, eviction)
	endUnreachable         // the coordinator stayed unreachable (Config.Unreachable)
	endRefused             // the coordinator refused an event sent without waiting (Reporter.Refused)
)

// run is the state of one Run, read by the finaliser.
type run struct {
	a        *protocol.Assignment
	inputDir string
	outDir   string
	stdout   string
	stderr   string
	ran      bool // the container process was started (logs exist)
	logsUp   bool // the logs went up beside the outputs: the finaliser need not upload them
	result   container.Result
	outputs  []protocol.OutputFile
	manifest *protocol.OutputsManifest // instead of outputs, beyond protocol.MaxInlineOutputs
	userErr  string                    // a message for the user, when the system knows better than "unexpected"
}

// ErrUnreachable is what Run returns (wrapped) when it stopped because Config.Unreachable was
// closed.
var ErrUnreachable = errors.New("the coordinator stayed unreachable")

// ErrShutdown is the cause to cancel Run's context with (context.WithCancelCause) when the
// agent is being stopped, as opposed to the job being canceled.
var ErrShutdown = errors.New("agent shutting down")

// Run executes the assignment and reports every state. It returns nil when the final report
// was delivered (whatever the container did), or the error that prevented it. Canceling ctx
// with cause ErrShutdown stops the container and reports the agent's shutdown.
func (r *Runner) Run(ctx context.Context, a *protocol.Assignment) (err error) {
	st := &run{a: a}
	ctx, cancelJob := context.WithCancelCause(ctx)
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		select {
		case c := <-r.canceled:
			cancelJob(fmt.Errorf("%w: %s", errJobCanceled, c.Reason))
		case <-r.cfg.Unreachable: // nil when unset: never
			cancelJob(ErrUnreachable)
		case <-r.report.Refused():
			// An event sent without waiting (the container may be running) was refused.
			cancelJob(errRefused)
		case <-ctx.Done():
		}
	}()
	defer func() { cancelJob(nil); <-watcher }() // runs after the finaliser
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("agent panic: %v\n%s", p, debug.Stack())
		}
		err = r.finish(ctx, st, err)
	}()
	if err := r.prepare(st); err != nil {
		return err
	}
	if err := r.download(ctx, st); err != nil {
		return err
	}
	if err := r.sendState(ctx, job.JobSubmitting, nil); err != nil {
		return err
	}
	if err := r.execute(ctx, st); err != nil {
		return err
	}
	if st.result.ExitCode != 0 || st.result.TimedOut {
		return errUserContainer
	}
	return r.uploadOutputs(ctx, st)
}

var (
	errJobCanceled   = errors.New("job canceled")
	errUserContainer = errors.New("container failed")
	errRefused       = errors.New("the coordinator refused an event of this agent")
)

func (r *Runner) prepare(st *run) error {
	st.inputDir = filepath.Join(r.cfg.WorkDir, "input")
	st.outDir = filepath.Join(r.cfg.WorkDir, "output")
	st.stdout = filepath.Join(r.cfg.WorkDir, fmt.Sprintf("container-%d-stdout.txt", st.a.Container))
	st.stderr = filepath.Join(r.cfg.WorkDir, fmt.Sprintf("container-%d-stderr.txt", st.a.Container))
	for _, d := range []string{st.inputDir, st.outDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create work directory: %w", err)
		}
	}
	// The container runs as its image's user, unknown here, without CAP_DAC_OVERRIDE: the
	// output directory must be writable by anyone (as in CTS), whatever the umask.
	if err := os.Chmod(st.outDir, 0o777); err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	return nil
}

// downloads lists the assignment's inputs as downloads into inputDir.
func downloads(a *protocol.Assignment, inputDir string) ([]transfer.Download, error) {
	ds := make([]transfer.Download, 0, len(a.Inputs))
	for _, in := range a.Inputs {
		rel := path.Clean(in.RelPath)
		if rel == "." || path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
			return nil, fmt.Errorf("assignment has an unsafe input path %q", in.RelPath)
		}
		ds = append(ds, transfer.Download{S3Path: in.S3Path, CRC64NVME: in.CRC64NVME, Size: in.Size, Dest: filepath.Join(inputDir, filepath.FromSlash(rel))})
	}
	return ds, nil
}

// mounts lists the container's bind mounts: inputs read-only, outputs read-write, refdata
// read-only when the image needs it.
func (r *Runner) mounts(a *protocol.Assignment, inputDir, outDir string) ([]container.Mount, error) {
	ms := []container.Mount{
		{Source: r.cfg.HostPath(inputDir), Destination: a.InputMountPoint, ReadOnly: true},
		{Source: r.cfg.HostPath(outDir), Destination: a.OutputMountPoint},
	}
	if a.RefdataID != "" {
		if r.cfg.RefdataHostPath == "" || a.RefdataMountPoint == "" {
			return nil, fmt.Errorf("the image needs refdata %s but REFDATA_HOST_PATH or the mount point is not set", a.RefdataID)
		}
		if strings.ContainsAny(a.RefdataID, "/\\") || a.RefdataID == ".." || a.RefdataID == "." {
			return nil, fmt.Errorf("assignment has an unsafe refdata id %q", a.RefdataID)
		}
		ms = append(ms, container.Mount{Source: r.cfg.HostPath(filepath.Join(r.cfg.RefdataHostPath, a.RefdataID)), Destination: a.RefdataMountPoint, ReadOnly: true})
	}
	return ms, nil
}

// Plan is what Run would do with an assignment, for `cts-agent --dry-run`.
type Plan struct {
	ContainerID string
	Downloads   []transfer.Download
	Mounts      []container.Mount
	// OutputPrefix is where outputs go ("bucket/prefix/", with "<n>/" when declobbering).
	OutputPrefix string
	// Logs are the S3 paths of the container's stdout and stderr.
	Logs []string
}

// Plan describes what Run would do with a, without touching anything.
func (r *Runner) Plan(a *protocol.Assignment) (Plan, error) {
	inputDir, outDir := filepath.Join(r.cfg.WorkDir, "input"), filepath.Join(r.cfg.WorkDir, "output")
	ds, err := downloads(a, inputDir)
	if err != nil {
		return Plan{}, err
	}
	ms, err := r.mounts(a, inputDir, outDir)
	if err != nil {
		return Plan{}, err
	}
	prefix := a.OutputDir
	if a.Declobber {
		prefix += fmt.Sprintf("%d/", a.Container)
	}
	return Plan{ContainerID: r.containerID(a), Downloads: ds, Mounts: ms, OutputPrefix: prefix, Logs: []string{
		a.LogDir + fmt.Sprintf("container-%d-stdout.txt", a.Container), a.LogDir + fmt.Sprintf("container-%d-stderr.txt", a.Container)}}, nil
}

func (r *Runner) download(ctx context.Context, st *run) error {
	ds, err := downloads(st.a, st.inputDir)
	if err != nil {
		return err
	}
	r.log.InfoContext(ctx, "downloading inputs", "files", len(ds))
	start := time.Now()
	paths, sizes := make([]string, len(ds)), make([]int64, len(ds))
	for i, d := range ds {
		paths[i], sizes[i] = d.S3Path, d.Size
	}
	r.meter.start(protocol.PhaseDownload, paths, sizes)
	err = r.xfer.DownloadAll(ctx, ds)
	r.meter.end(err == nil)
	if err != nil {
		var mm *checksum.MismatchError
		if errors.As(err, &mm) {
			st.userErr = fmt.Sprintf("Input file %s does not match its recorded CRC64/NVME checksum (expected %s, got %s): it changed after the job was submitted", mm.Path, mm.Want, mm.Got)
		}
		return fmt.Errorf("download inputs: %w", err)
	}
	r.log.InfoContext(ctx, "inputs downloaded and verified", "files", len(ds), "seconds", time.Since(start).Seconds())
	return nil
}

// containerID is a runtime ID unique on the node for this job, container and attempt.
func (r *Runner) containerID(a *protocol.Assignment) string {
	return ContainerID(a.JobID, a.Container, r.cfg.Attempt)
}

// ContainerID is the runtime's container ID of one container of a job run by one agent
// attempt: "cts-<first 8 of the job id>-<container>-<8 hex digits of the job and attempt>".
// A restarted agent of the same attempt computes the same ID, to remove what its previous
// process left.
func ContainerID(jobID string, container int, attempt string) string {
	h := sha256.Sum256([]byte(jobID + "\x00" + attempt))
	j := jobID
	if len(j) > 8 {
		j = j[:8]
	}
	return fmt.Sprintf("cts-%s-%d-%s", j, container, hex.EncodeToString(h[:4]))
}

func (r *Runner) execute(ctx context.Context, st *run) error {
	a := st.a
	ms, err := r.mounts(a, st.inputDir, st.outDir)
	if err != nil {
		return err
	}
	if err := r.runtime.Pull(ctx, a.Image); err != nil {
		st.userErr = imageMessage(a.Image, err)
		return fmt.Errorf("pull image %s: %w", a.Image, err)
	}
	r.log.DebugContext(ctx, "image ready", "image", a.Image)
	stdout, err := createLog(st.stdout, r.cfg.LogMaxBytes)
	if err != nil {
		return fmt.Errorf("create stdout log: %w", err)
	}
	defer stdout.Close()
	stderr, err := createLog(st.stderr, r.cfg.LogMaxBytes)
	if err != nil {
		return fmt.Errorf("create stderr log: %w", err)
	}
	defer stderr.Close()
	var outW, errW io.Writer = stdout, stderr
	if r.cfg.LiveLog != nil {
		so := logstream.New("stdout", r.cfg.LiveLog, r.cfg.LiveLogLimits)
		se := logstream.New("stderr", r.cfg.LiveLog, r.cfg.LiveLogLimits)
		defer se.Close()
		defer so.Close()
		outW, errW = io.MultiWriter(stdout, so), io.MultiWriter(stderr, se)
	}
	spec := container.Spec{
		ID: r.containerID(a), Image: a.Image, Command: a.Command, Env: a.Env,
		Mounts: ms,
		CPUs:   float64(a.CPUs), MemoryBytes: a.MemoryBytes,
		Timeout:   time.Duration(a.RuntimeSeconds * float64(time.Second)),
		KillGrace: r.cfg.KillGrace, Network: r.cfg.Network,
		Stdout: outW, Stderr: errW,
	}
	// The process is about to start: the coordinator counts the container as running. The
	// container does not wait for the acknowledgement: a cancel is pushed to the agent, and a
	// refusal stops the run (Refused), either way the container is stopped and removed.
	if err := r.sendState(ctx, job.JobSubmitted, nil); err != nil {
		return err
	}
	st.ran = true
	r.log.InfoContext(ctx, "container starting", "id", spec.ID, "image", a.Image)
	res, err := r.runtime.Run(ctx, spec)
	st.result = res
	if cerr := errors.Join(stdout.Close(), stderr.Close()); cerr != nil && err == nil {
		return fmt.Errorf("write container logs: %w", cerr)
	}
	if err != nil {
		var se *container.StartError
		if errors.As(err, &se) {
			st.userErr = fmt.Sprintf("The container could not be started: %s. Check the image's entrypoint and the job's arguments.", se.Message)
		} else {
			st.userErr = imageMessage(a.Image, err)
		}
		return fmt.Errorf("run container: %w", err)
	}
	r.log.InfoContext(ctx, "container exited", "exit_code", res.ExitCode, "oom_killed", res.OOMKilled,
		"timed_out", res.TimedOut, "canceled", res.Canceled, "seconds", res.Ended.Sub(res.Started).Seconds())
	if res.Canceled {
		if cause := context.Cause(ctx); cause != nil {
			return cause
		}
		// Not a cancel of ours: never let it pass for an exit code.
		return errors.New("run container: the runtime stopped the container without a cancel")
	}
	code := res.ExitCode
	next := job.UploadSubmitting
	if code != 0 || res.TimedOut {
		next = job.ErrorProcessingSubmitting
	}
	return r.sendState(ctx, next, func(ev *protocol.Event) { ev.ExitCode = &code; ev.OOMKilled = res.OOMKilled })
}

func (r *Runner) uploadOutputs(ctx context.Context, st *run) error {
	a := st.a
	// The outputs go up without waiting for the acknowledgement: a refusal or a cancel
	// arriving meanwhile ends the upload (the run's context).
	if err := r.sendState(ctx, job.UploadSubmitted, nil); err != nil {
		return err
	}
	var ups []transfer.Upload
	var sizes []int64
	prefix := a.OutputDir
	if a.Declobber {
		prefix += fmt.Sprintf("%d/", a.Container)
	}
	err := filepath.WalkDir(st.outDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(st.outDir, p)
		switch {
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			st.userErr = fmt.Sprintf("Output %s is not a regular file (symbolic links, devices and sockets are not uploaded)", filepath.ToSlash(rel))
			return fmt.Errorf("output %s is not a regular file", rel)
		}
		key := prefix + filepath.ToSlash(rel)
		if _, err := s3path.Parse(key); err != nil {
			st.userErr = fmt.Sprintf("Output file name %s cannot be stored in S3: %s", filepath.ToSlash(rel), err)
			return fmt.Errorf("output %s: %w", rel, err)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		ups = append(ups, transfer.Upload{Source: p, S3Path: key})
		sizes = append(sizes, info.Size())
		return nil
	})
	if err != nil {
		return fmt.Errorf("collect outputs: %w", err)
	}
	r.log.InfoContext(ctx, "uploading outputs", "files", len(ups))
	paths := make([]string, len(ups))
	for i, u := range ups {
		paths[i] = u.S3Path
	}
	// The container's logs go up at the same time as the outputs, not after them; should
	// that fail, the finaliser uploads them again (and says so if that fails too).
	logsDone := make(chan error, 1)
	go func() { logsDone <- r.uploadLogs(ctx, st) }()
	defer func() { st.logsUp = <-logsDone == nil }()
	r.meter.start(protocol.PhaseUpload, paths, sizes)
	done, err := r.xfer.UploadAll(ctx, ups)
	r.meter.end(err == nil && len(done) == len(ups))
	if err != nil {
		return fmt.Errorf("upload outputs: %w", err)
	}
	if len(done) != len(ups) {
		return fmt.Errorf("upload outputs: %d of %d files reported uploaded", len(done), len(ups))
	}
	if len(done) > protocol.MaxInlineOutputs {
		st.manifest, err = r.uploadManifest(ctx, st, done)
		return err
	}
	for _, u := range done {
		st.outputs = append(st.outputs, protocol.OutputFile{File: u.S3Path, CRC64NVME: u.CRC64NVME})
	}
	return nil
}

// uploadManifest writes the outputs manifest (sorted by S3 path) to a file beside the
// container's logs, uploads it to the job's log folder and returns its seal, checked against
// what S3 stored.
func (r *Runner) uploadManifest(ctx context.Context, st *run, done []transfer.Uploaded) (*protocol.OutputsManifest, error) {
	slices.SortFunc(done, func(a, b transfer.Uploaded) int { return strings.Compare(a.S3Path, b.S3Path) })
	name := filepath.Join(filepath.Dir(st.stdout), protocol.ManifestFile(st.a.Container))
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("write outputs manifest: %w", err)
	}
	defer os.Remove(name)
	w := manifest.NewWriter(f)
	for _, u := range done {
		if err := w.Add(protocol.ManifestEntry{File: u.S3Path, Size: u.Size, CRC64NVME: u.CRC64NVME}); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("write outputs manifest: %w", err)
		}
	}
	seal, err := w.Close()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write outputs manifest: %w", err)
	}
	seal.File = st.a.LogDir + protocol.ManifestFile(st.a.Container)
	up, err := r.xfer.UploadAll(ctx, []transfer.Upload{{Source: name, S3Path: seal.File}})
	if err != nil {
		return nil, fmt.Errorf("upload outputs manifest: %w", err)
	}
	if len(up) != 1 || up[0].CRC64NVME != seal.CRC64NVME || up[0].Size != seal.Size {
		return nil, fmt.Errorf("upload outputs manifest: S3 stored %+v, the agent wrote %d bytes with CRC64/NVME %s", up, seal.Size, seal.CRC64NVME)
	}
	r.log.InfoContext(ctx, "outputs manifest uploaded", "file", seal.File, "outputs", seal.Count, "bytes", seal.Size)
	return &seal, nil
}

// uploadLogs uploads the container's stdout and stderr to the job's log folder. It runs in
// the finaliser, outside Run's recover: a panic becomes its error.
func (r *Runner) uploadLogs(ctx context.Context, st *run) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("agent panic: %v\n%s", p, debug.Stack())
		}
	}()
	_, err = r.xfer.UploadAll(ctx, r.logUploads(st))
	return err
}

// logUploads lists the uploads of the container's stdout and stderr files that exist.
func (r *Runner) logUploads(st *run) []transfer.Upload {
	var ups []transfer.Upload
	for _, f := range []string{st.stdout, st.stderr} {
		if _, err := os.Stat(f); err == nil {
			ups = append(ups, transfer.Upload{Source: f, S3Path: st.a.LogDir + filepath.Base(f)})
		}
	}
	return ups
}

// sendState sends a state that records progress, without waiting for its acknowledgement
// (the final report waits for it).
func (r *Runner) sendState(ctx context.Context, s job.State, edit func(*protocol.Event)) error {
	ev := protocol.Event{State: s, Time: time.Now().UTC()}
	if edit != nil {
		edit(&ev)
	}
	if err := r.report.Send(ctx, ev); err != nil {
		return fmt.Errorf("%w: %s: %w", errReport, s, err)
	}
	r.log.DebugContext(ctx, "state sent", "state", s)
	// Sending does not wait, so it does not notice a cancel or a stop: the run goes no
	// further once its context ended (the state is delivered before the final one).
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// finish is the single exit: it classifies how the run ended, uploads logs when the container
// ran, and sends the terminal event. It runs on a context detached from cancellation, which
// ends FinalTimeout after runCtx does, so a canceled or stopping agent still reports.
func (r *Runner) finish(runCtx context.Context, st *run, err error) error {
	kind := classify(runCtx, err)
	ctx, cancel := finalContext(runCtx, r.cfg.FinalTimeout)
	defer cancel()
	var reportErr error
	if errors.Is(err, errReport) && runCtx.Err() == nil {
		// The coordinator refused this agent or stayed unreachable: nothing more can be
		// reported. (A report interrupted by a cancel or shutdown is retried below.)
		return err
	}
	if kind == endRefused {
		// The coordinator refused an event sent while the run went on: the container is
		// stopped (the run's context ended) and nothing is uploaded. The final report fails
		// at once with the refusal, which says why.
		ev := protocol.Event{Time: time.Now().UTC(), State: job.Error, Error: "The job's container was stopped: the service refused its worker.",
			AdminError: "agent stopped the container: " + errRefused.Error()}
		if rerr := r.report.Report(ctx, ev); rerr != nil {
			return fmt.Errorf("report %s: %w", ev.State, rerr)
		}
		return nil
	}
	if kind == endUnreachable {
		// The container is stopped (the run's context ended). Nothing can be delivered: the
		// final event goes to the session's journal only (a Report on an ended context
		// journals it and returns at once), for an agent restarted with this attempt to
		// resend; the logs stay in the work directory.
		ev := protocol.Event{Time: time.Now().UTC(), State: job.Error,
			Error:      "The job's container was stopped because its worker lost contact with the service.",
			AdminError: fmt.Sprintf("agent stopped the container: %v", context.Cause(runCtx))}
		done, cancel := context.WithCancel(context.WithoutCancel(runCtx))
		cancel()
		_ = r.report.Report(done, ev)
		return fmt.Errorf("%w (the container was stopped)", ErrUnreachable)
	}
	// A second stop signal (Hurry): abandon the log upload at once, and give the reports
	// HurryTimeout from then on.
	logCtx, cancelLogs := hurryContext(ctx, r.cfg.Hurry, 0)
	defer cancelLogs()
	ctx, cancelReports := hurryContext(ctx, r.cfg.Hurry, r.cfg.HurryTimeout)
	defer cancelReports()
	var logErr error
	if st.ran {
		if kind == endUserError {
			if rerr := r.sendState(ctx, job.ErrorProcessingSubmitted, nil); rerr != nil {
				return rerr
			}
		}
		switch {
		case st.logsUp:
		case hurried(r.cfg.Hurry):
			logErr = errors.New("skipped: the agent was told to stop at once (second signal)")
		default:
			logErr = r.uploadLogs(logCtx, st)
		}
		if logErr != nil {
			r.log.ErrorContext(ctx, "upload container logs", "error", logErr)
		}
	}
	ev := protocol.Event{Time: time.Now().UTC()}
	switch kind {
	case endSuccess:
		if logErr != nil {
			ev.State, ev.AdminError = job.Error, fmt.Sprintf("upload container logs: %v", logErr)
			ev.Error = "The container's logs could not be saved."
			break
		}
		ev.State, ev.Outputs, ev.OutputsManifest = job.Complete, st.outputs, st.manifest
		if ev.Outputs == nil && ev.OutputsManifest == nil {
			ev.Outputs = []protocol.OutputFile{}
		}
	case endUserError:
		ev.State = job.Error
		code := st.result.ExitCode
		ev.ExitCode = &code
		// A plain non-zero exit carries no user message: the coordinator words it for the whole
		// job. The kills the system did itself name their cause and what to change.
		switch {
		case st.result.TimedOut:
			ev.Error = fmt.Sprintf("The container ran longer than the job's runtime limit of %s and was stopped. Resubmit the job with a longer runtime.",
				humanDuration(time.Duration(st.a.RuntimeSeconds*float64(time.Second))))
			ev.AdminError = ev.Error
		case st.result.OOMKilled:
			ev.Error = fmt.Sprintf("The container used more than the job's memory limit of %s and was killed. Resubmit the job with more memory.", humanBytes(st.a.MemoryBytes))
			ev.AdminError = ev.Error
		default:
			ev.AdminError = fmt.Sprintf("The container exited with code %d.", code)
		}
		ev.OOMKilled = st.result.OOMKilled
	case endCanceled:
		ev.State, ev.Error, ev.AdminError = job.Error, "The job was canceled.", fmt.Sprintf("canceled: %v", context.Cause(runCtx))
	case endShutdown:
		ev.State, ev.Error = job.Error, "The job's container was stopped by the compute system (removed or evicted)."
		ev.AdminError = "agent received a stop signal"
	default:
		ev.State = job.Error
		ev.AdminError = err.Error()
		ev.Error = st.userErr
		if ev.Error == "" {
			ev.Error = "An unexpected error occurred."
		}
	}
	if kind == endUserError && st.userErr != "" {
		ev.Error = st.userErr
	}
	reportErr = r.report.Report(ctx, ev)
	if reportErr != nil {
		return fmt.Errorf("report %s: %w", ev.State, reportErr)
	}
	r.log.InfoContext(ctx, "final state reported", "state", ev.State, "error", ev.AdminError)
	return nil
}

// hurryContext returns a child of ctx canceled d after hurry is closed (never when hurry is
// nil).
func hurryContext(ctx context.Context, hurry <-chan struct{}, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if hurry == nil {
		return ctx, cancel
	}
	go func() {
		select {
		case <-hurry:
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func hurried(hurry <-chan struct{}) bool {
	if hurry == nil {
		return false
	}
	select {
	case <-hurry:
		return true
	default:
		return false
	}
}

// finalContext returns a context that keeps runCtx's values but not its cancellation: it
// ends timeout after runCtx ends (after now, if runCtx has already ended), or when cancel is
// called.
func finalContext(runCtx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(runCtx))
	var mu sync.Mutex
	var timer *time.Timer
	stop := context.AfterFunc(runCtx, func() {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() == nil {
			timer = time.AfterFunc(timeout, cancel)
		}
	})
	return ctx, func() {
		stop()
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if timer != nil {
			timer.Stop()
		}
	}
}

// errReport marks failures to send a state (wrapped by sendState's caller chain).
var errReport = errors.New("report failed")

func classify(ctx context.Context, err error) endKind {
	switch {
	case err == nil:
		return endSuccess
	case errors.Is(err, errUserContainer):
		return endUserError
	case errors.Is(context.Cause(ctx), ErrShutdown):
		return endShutdown
	case errors.Is(context.Cause(ctx), ErrUnreachable):
		return endUnreachable
	case errors.Is(context.Cause(ctx), errRefused):
		return endRefused
	case errors.Is(context.Cause(ctx), errJobCanceled):
		return endCanceled
	default:
		return endSystem
	}
}
