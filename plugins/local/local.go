// Package local is the "local" launcher: it starts one agent process per container on this
// machine. It backs the dev site (cts-dev, `make dev`) and the tests. Its binary is
// cmd/cts-launcher-local, served through shared/launcher.
//
// Each container runs as
//
//	plugin ──starts──► supervisor (own session) ──starts──► agent (own process group)
//
// The supervisor (package supervisor) is its own small binary, cts-local-supervisor, beside
// the plugin's (the plugin binary re-executed where it is missing). It outlives the plugin,
// waits for the agent, records its exit status, and carries out a cancel's SIGTERM → grace →
// SIGKILL, so the on-disk state under work_dir (supervisor's records) stays true across
// plugin and coordinator restarts: a restarted plugin answers Status from it and stays
// idempotent.
//
// It must not import anything of ours but shared/..., must not pass its own environment to
// agents (only PATH and HOME, the configured env and the request env), and ignores the resource
// request (CPUs, memory, runtime, disk): the agent enforces limits on its container.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kbase/cts/plugins/local/supervisor"
	"github.com/kbase/cts/shared/grace"
	"github.com/kbase/cts/shared/launcher"
)

// Name is the plugin's name in Info and the prefix of its handles.
const Name = "local"

// SupervisorBinary is the supervisor's own binary, looked for beside the plugin's.
const SupervisorBinary = "cts-local-supervisor"

// SupervisorCommand returns the supervisor's command line for the plugin binary at exe:
// SupervisorBinary beside it when there is one (it starts in a fraction of the plugin
// binary's time: no gRPC to initialise), else exe itself, whose main runs
// supervisor.Supervise when its first argument is supervisor.Command.
func SupervisorCommand(exe string) []string {
	if p := filepath.Join(filepath.Dir(exe), SupervisorBinary); executable(p) {
		return []string{p, supervisor.Command}
	}
	return []string{exe, supervisor.Command}
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Options are the local launcher's wiring (not its configuration, which comes by Configure).
type Options struct {
	// Supervisor is the command line that runs supervisor.Supervise, normally
	// SupervisorCommand's. The container directory, kill grace and agent command line are
	// appended.
	Supervisor []string
	// Logger receives the launcher's own logs; nil discards them.
	Logger *slog.Logger
}

// Launcher is the local launcher. It is safe for concurrent use.
type Launcher struct {
	supervisor []string
	log        *slog.Logger

	mu  sync.RWMutex
	cfg *Config // nil until Configure succeeds

	// submitMu serialises Submit, Cancel and Cleanup: they decide what to start or remove
	// from the directory state and must not interleave in one process. (Across processes the
	// supervisor's O_EXCL claim keeps one agent per container.)
	submitMu sync.Mutex
	// inFlight counts Submits in progress per job directory, so Status can tell a container
	// being started (idle) from one whose submit was interrupted (unknown).
	inFlightMu sync.Mutex
	inFlight   map[string]int

	// bg joins the supervisor reapers and cancel escalations; each ends by itself (when its
	// process ends, or after the kill grace).
	bg sync.WaitGroup
}

var (
	_ launcher.Launcher = (*Launcher)(nil)
	_ launcher.Cleaner  = (*Launcher)(nil)
)

// New returns an unconfigured local launcher.
func New(opts Options) *Launcher {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Launcher{
		supervisor: append([]string(nil), opts.Supervisor...),
		log:        logger,
		inFlight:   map[string]int{},
	}
}

// Wait waits for the launcher's background goroutines: the reapers of the supervisors this
// process started (they end when the supervisors do) and pending cancel escalations.
func (l *Launcher) Wait() { l.bg.Wait() }

// Info implements launcher.Launcher.
func (l *Launcher) Info(context.Context) (launcher.Info, error) {
	return launcher.Info{
		Name:         Name,
		APIVersion:   launcher.APIVersion,
		Capabilities: []string{launcher.CapabilityCleanup},
	}, nil
}

// Configure implements launcher.Launcher: it parses and validates a Config and creates
// work_dir. On error the previous configuration stays.
func (l *Launcher) Configure(_ context.Context, data []byte) error {
	if len(l.supervisor) == 0 {
		return fmt.Errorf("configure: %w: no supervisor command (Options.Supervisor)", launcher.ErrInvalidConfig)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o750); err != nil {
		return fmt.Errorf("configure: %w: work_dir: %v", launcher.ErrInvalidConfig, err)
	}
	l.mu.Lock()
	l.cfg = &cfg
	l.mu.Unlock()
	l.log.Info("configured", "work_dir", cfg.WorkDir, "agent_path", cfg.AgentPath, "kill_grace", cfg.killGrace().String())
	return nil
}

func (l *Launcher) config() (Config, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.cfg == nil {
		return Config{}, launcher.ErrNotConfigured
	}
	return *l.cfg, nil
}

// Handle returns the handle of (jobID, attempt): "local:<job_id>:<attempt>".
func Handle(jobID string, attempt int) string {
	return Name + ":" + jobID + ":" + strconv.Itoa(attempt)
}

// parseRef checks a JobRef and returns its attempt.
func parseRef(ref launcher.JobRef) (int, error) {
	rest, ok := strings.CutPrefix(ref.Handle, Name+":")
	i := strings.LastIndexByte(rest, ':')
	if !ok || i < 0 {
		return 0, fmt.Errorf("%w: handle %q is not local:<job_id>:<attempt>", launcher.ErrInvalidRequest, ref.Handle)
	}
	jobID, attemptStr := rest[:i], rest[i+1:]
	if jobID != ref.JobID {
		return 0, fmt.Errorf("%w: handle %q does not belong to job %q", launcher.ErrInvalidRequest, ref.Handle, ref.JobID)
	}
	if err := launcher.ValidateJobID(jobID); err != nil {
		return 0, err
	}
	attempt, err := strconv.Atoi(attemptStr)
	if err != nil || attempt < 0 || strconv.Itoa(attempt) != attemptStr {
		return 0, fmt.Errorf("%w: handle %q has a bad attempt", launcher.ErrInvalidRequest, ref.Handle)
	}
	return attempt, nil
}

// AttemptName is the CTS_AGENT_ATTEMPT of container n: "local-<first 8 of job id>-<attempt>-<n>".
func AttemptName(jobID string, attempt, n int) string {
	short := jobID
	if len(short) > 8 {
		short = short[:8]
	}
	return fmt.Sprintf("local-%s-%d-%d", short, attempt, n)
}

// Submit implements launcher.Launcher. It records the request in
// <work_dir>/<job_id>/<attempt>/request.json, then starts a supervisor per container that has
// none. A repeated Submit (also after a plugin restart) finds the record, returns
// Existing=true and only starts containers an interrupted earlier Submit did not reach. It
// returns once every supervisor process has started; agents start moments later (idle until
// then). When ctx ends midway it returns ctx's error; repeating the Submit completes the job.
func (l *Launcher) Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	cfg, err := l.config()
	if err != nil {
		return launcher.SubmitResponse{}, fmt.Errorf("submit: %w", err)
	}
	if err := req.Validate(); err != nil {
		return launcher.SubmitResponse{}, fmt.Errorf("submit: %w", err)
	}
	l.submitMu.Lock()
	defer l.submitMu.Unlock()

	jd := supervisor.JobDir(cfg.WorkDir, req.JobID, req.Attempt)
	resp := launcher.SubmitResponse{Handle: Handle(req.JobID, req.Attempt)}
	var rec supervisor.RequestRecord
	err = supervisor.ReadRecord(filepath.Join(jd, supervisor.RequestFile), &rec)
	switch {
	case err == nil:
		if rec.Containers != req.Containers {
			return launcher.SubmitResponse{}, fmt.Errorf("submit %s: %w: attempt %d was submitted with %d containers, not %d",
				req.JobID, launcher.ErrConflict, req.Attempt, rec.Containers, req.Containers)
		}
		resp.Existing = true
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(jd, 0o750); err != nil {
			return launcher.SubmitResponse{}, fmt.Errorf("submit %s: %w", req.JobID, err)
		}
		rec = supervisor.RequestRecord{JobID: req.JobID, Attempt: req.Attempt, Containers: req.Containers, Submitted: time.Now()}
		if err := supervisor.WriteRecord(filepath.Join(jd, supervisor.RequestFile), rec); err != nil {
			return launcher.SubmitResponse{}, fmt.Errorf("submit %s: %w", req.JobID, err)
		}
	default:
		return launcher.SubmitResponse{}, fmt.Errorf("submit %s: %w", req.JobID, err)
	}

	l.setInFlight(jd, +1)
	defer l.setInFlight(jd, -1)
	env := agentEnv(cfg, req)
	started := 0
	for n := range req.Containers {
		if err := ctx.Err(); err != nil {
			return launcher.SubmitResponse{}, fmt.Errorf("submit %s: %w", req.JobID, err)
		}
		cd := supervisor.ContainerDir(jd, n)
		if supervisor.Exists(filepath.Join(cd, supervisor.ClaimFile)) || supervisor.Exists(filepath.Join(cd, supervisor.ExitFile)) {
			continue
		}
		if err := os.MkdirAll(cd, 0o750); err != nil {
			return launcher.SubmitResponse{}, fmt.Errorf("submit %s: %w", req.JobID, err)
		}
		cenv := append(slices.Clone(env),
			launcher.EnvContainerNumber+"="+strconv.Itoa(n),
			launcher.EnvAgentAttempt+"="+AttemptName(req.JobID, req.Attempt, n),
			EnvAgentWorkDir+"="+cd,
		)
		if len(req.Credentials) > 0 {
			// The container's credential, readable by the agent's user only, named by the
			// environment: never the credential itself in a process environment or a log.
			cf := filepath.Join(cd, CredentialFile)
			if err := writePrivate(cf, req.Credentials[n]); err != nil {
				return launcher.SubmitResponse{}, fmt.Errorf("submit %s container %d: %w", req.JobID, n, err)
			}
			cenv = append(cenv, launcher.EnvCredentialFile+"="+cf)
		}
		if cfg.killGrace() > 0 {
			// The agent fits its container's stop and its final report inside this grace.
			cenv = append(cenv, grace.EnvKillGrace+"="+grace.Seconds(cfg.killGrace()))
		}
		if err := l.startSupervisor(cfg, cd, cenv); err != nil {
			return launcher.SubmitResponse{}, fmt.Errorf("submit %s container %d: %w", req.JobID, n, err)
		}
		started++
	}
	l.log.Info("submitted", "job_id", req.JobID, "attempt", req.Attempt, "containers", req.Containers,
		"started", started, "existing", resp.Existing)
	return resp, nil
}

// CredentialFile is the name of a container's credential file in its directory.
const CredentialFile = "credential"

// writePrivate writes a secret to path with mode 0600 (created anew, or replaced atomically).
func writePrivate(path, secret string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write credential: %w", err)
	}
	_, werr := f.WriteString(secret + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write credential: %w", werr)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write credential: %w", err)
	}
	return nil
}

// agentEnv is the environment common to the job's agents: PATH and HOME of this process, then
// the configured env, then the request env (later entries win).
func agentEnv(cfg Config, req launcher.SubmitRequest) []string {
	vars := map[string]string{}
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			vars[k] = v
		}
	}
	for k, v := range cfg.Env {
		vars[k] = v
	}
	for k, v := range req.Env {
		vars[k] = v
	}
	env := make([]string, 0, len(vars)+3)
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// startSupervisor starts the supervisor of one container and reaps it in the background.
func (l *Launcher) startSupervisor(cfg Config, dir string, env []string) error {
	logf, err := os.OpenFile(filepath.Join(dir, supervisor.SupervisorLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	defer func() { _ = logf.Close() }()
	args := append(append([]string(nil), l.supervisor[1:]...), dir, cfg.killGrace().String(), cfg.AgentPath)
	args = append(args, cfg.AgentArgs...)
	// The supervisor is waited for below and signalled by pid; it is not tied to a context.
	cmd := exec.Command(l.supervisor[0], args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: terminal signals aimed at the coordinator never reach the containers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	// Until the new supervisor claims its container (a busy machine may take seconds to run
	// it), this record is what tells Status the container is starting, not abandoned.
	spawned := supervisor.ProcRecord{PID: cmd.Process.Pid, Started: time.Now()}
	spawned.ProcStart, _, _ = supervisor.ProcStart(spawned.PID)
	if err := supervisor.WriteRecord(filepath.Join(dir, supervisor.SpawnedFile), spawned); err != nil {
		l.log.Warn("record the started supervisor; Status may call the container unknown until it claims it",
			"dir", dir, "error", err)
	}
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		// Reap it, so no zombie stays behind; its outcome is in the exit record.
		_ = cmd.Wait()
	}()
	return nil
}

func (l *Launcher) setInFlight(jd string, d int) {
	l.inFlightMu.Lock()
	defer l.inFlightMu.Unlock()
	l.inFlight[jd] += d
	if l.inFlight[jd] <= 0 {
		delete(l.inFlight, jd)
	}
}

func (l *Launcher) isInFlight(jd string) bool {
	l.inFlightMu.Lock()
	defer l.inFlightMu.Unlock()
	return l.inFlight[jd] > 0
}

// Status implements launcher.Launcher. It reads the directory state only and has no side
// effects. An unknown job (no request.json) reports ErrNotFound in its entry.
func (l *Launcher) Status(ctx context.Context, refs []launcher.JobRef) ([]launcher.JobStatus, error) {
	cfg, err := l.config()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	out := make([]launcher.JobStatus, len(refs))
	for i, ref := range refs {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
		out[i] = l.jobStatus(cfg, ref)
	}
	return out, nil
}

func (l *Launcher) jobStatus(cfg Config, ref launcher.JobRef) launcher.JobStatus {
	st := launcher.JobStatus{JobID: ref.JobID}
	attempt, err := parseRef(ref)
	if err != nil {
		st.Err = err
		return st
	}
	jd := supervisor.JobDir(cfg.WorkDir, ref.JobID, attempt)
	var rec supervisor.RequestRecord
	if err := supervisor.ReadRecord(filepath.Join(jd, supervisor.RequestFile), &rec); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("job %s attempt %d: %w", ref.JobID, attempt, launcher.ErrNotFound)
		}
		st.Err = err
		return st
	}
	inFlight := l.isInFlight(jd)
	st.Containers = make([]launcher.ContainerStatus, rec.Containers)
	for n := range rec.Containers {
		st.Containers[n] = containerStatus(supervisor.ContainerDir(jd, n), n, AttemptName(ref.JobID, attempt, n), inFlight)
	}
	return st
}

// startingTimeout is how long a claimed container may lack its supervisor record before Status
// calls it unknown (the supervisor died while starting).
const startingTimeout = 30 * time.Second

// containerStatus derives a container's state from its directory:
//
//	exit record                    → exited, or removed after a cancel
//	supervisor alive, no agent pid → idle (starting)
//	supervisor alive, agent pid    → running ("removal requested" once canceled)
//	supervisor gone, agent alive   → running (its exit will not be recorded)
//	no claim, submit in progress   → idle
//	no claim, spawned supervisor   → idle (starting) while it lives, else unknown
//	otherwise                      → unknown, with the reason
func containerStatus(dir string, n int, attempt string, inFlight bool) launcher.ContainerStatus {
	cs := launcher.ContainerStatus{Container: n, Attempt: attempt}
	fromExit := func(ex supervisor.ExitRecord) launcher.ContainerStatus {
		cs.State = launcher.StateExited
		if ex.Canceled || supervisor.Exists(filepath.Join(dir, supervisor.CancelFile)) {
			cs.State = launcher.StateRemoved
		}
		cs.ExitCode, cs.Reason, cs.Started, cs.Ended = ex.ExitCode, ex.Reason, ex.Started, ex.Ended
		return cs
	}
	var ex supervisor.ExitRecord
	if supervisor.ReadRecord(filepath.Join(dir, supervisor.ExitFile), &ex) == nil {
		return fromExit(ex)
	}
	canceling := supervisor.Exists(filepath.Join(dir, supervisor.CancelFile))
	var sup, agent supervisor.ProcRecord
	supErr := supervisor.ReadRecord(filepath.Join(dir, supervisor.SupervisorFile), &sup)
	agentErr := supervisor.ReadRecord(filepath.Join(dir, supervisor.PIDFile), &agent)
	if agentErr == nil {
		cs.Started = agent.Started
	}
	switch {
	case supErr == nil && sup.Alive():
		if agentErr != nil {
			cs.State, cs.Reason = launcher.StateIdle, "starting"
			return cs
		}
		cs.State = launcher.StateRunning
		if canceling {
			cs.Reason = "removal requested"
		}
		return cs
	case supErr != nil:
		fi, claimErr := os.Stat(filepath.Join(dir, supervisor.ClaimFile))
		var spawned supervisor.ProcRecord
		spawnedErr := supervisor.ReadRecord(filepath.Join(dir, supervisor.SpawnedFile), &spawned)
		switch {
		case claimErr == nil && time.Since(fi.ModTime()) < startingTimeout:
			cs.State, cs.Reason = launcher.StateIdle, "starting"
		case claimErr != nil && inFlight:
			cs.State, cs.Reason = launcher.StateIdle, "being submitted"
		case claimErr != nil && spawnedErr == nil && spawned.Alive():
			cs.State, cs.Reason = launcher.StateIdle, "starting"
		case claimErr != nil && supervisor.Exists(filepath.Join(dir, supervisor.ClaimFile)):
			// Claimed between the Stat and now: starting.
			cs.State, cs.Reason = launcher.StateIdle, "starting"
		case claimErr != nil && spawnedErr == nil:
			cs.State, cs.Reason = launcher.StateUnknown, "its supervisor ended before it claimed the container (see supervisor.log): submit again to start it"
		case claimErr != nil:
			cs.State, cs.Reason = launcher.StateUnknown, "never started (interrupted submit): submit again to start it"
		default:
			cs.State, cs.Reason = launcher.StateUnknown, "supervisor died while starting"
		}
		return cs
	}
	// The supervisor is gone without an exit record, or it wrote one just now.
	if supervisor.ReadRecord(filepath.Join(dir, supervisor.ExitFile), &ex) == nil {
		return fromExit(ex)
	}
	if agentErr == nil && agent.Alive() {
		cs.State, cs.Reason = launcher.StateRunning, "supervisor gone: the exit status will not be recorded"
		return cs
	}
	cs.State, cs.Reason = launcher.StateUnknown, "ended without a recorded exit status (supervisor killed)"
	return cs
}

// Cancel implements launcher.Launcher. For each container without an exit record it writes
// the cancel marker and sends SIGTERM to the supervisor, which stops the agent's process group
// and sends SIGKILL after kill_grace_seconds. Containers not started yet never start. If a
// supervisor is gone, Cancel signals the agent's group itself. An unknown job is success.
func (l *Launcher) Cancel(ctx context.Context, ref launcher.JobRef) error {
	cfg, err := l.config()
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	attempt, err := parseRef(ref)
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	l.submitMu.Lock()
	defer l.submitMu.Unlock()
	jd := supervisor.JobDir(cfg.WorkDir, ref.JobID, attempt)
	var rec supervisor.RequestRecord
	if err := supervisor.ReadRecord(filepath.Join(jd, supervisor.RequestFile), &rec); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("cancel %s: %w", ref.JobID, err)
	}
	var errs []error
	for n := range rec.Containers {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cancel %s: %w", ref.JobID, err)
		}
		if err := l.cancelContainer(cfg, supervisor.ContainerDir(jd, n)); err != nil {
			errs = append(errs, fmt.Errorf("container %d: %w", n, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cancel %s: %w", ref.JobID, err)
	}
	l.log.Info("canceled", "job_id", ref.JobID, "attempt", attempt)
	return nil
}

func (l *Launcher) cancelContainer(cfg Config, dir string) error {
	if supervisor.Exists(filepath.Join(dir, supervisor.ExitFile)) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	// The marker first: a supervisor checks it after publishing its record, so whichever of
	// us is second sees the other.
	if !supervisor.Exists(filepath.Join(dir, supervisor.CancelFile)) {
		if err := supervisor.WriteRecord(filepath.Join(dir, supervisor.CancelFile), supervisor.CancelRecord{Requested: time.Now()}); err != nil {
			return err
		}
	}
	var sup, agent supervisor.ProcRecord
	if supervisor.ReadRecord(filepath.Join(dir, supervisor.SupervisorFile), &sup) == nil && sup.Alive() {
		return supervisor.SignalProcess(sup.PID, syscall.SIGTERM)
	}
	if !supervisor.Exists(filepath.Join(dir, supervisor.ClaimFile)) {
		// Never started (and, with the marker in place, never will start).
		return supervisor.WriteRecord(filepath.Join(dir, supervisor.ExitFile), supervisor.ExitRecord{Canceled: true, Reason: "canceled before the agent started", Ended: time.Now()})
	}
	if supervisor.ReadRecord(filepath.Join(dir, supervisor.SupervisorFile), &sup) != nil {
		// Claimed, record not written yet: the supervisor will see the marker.
		return nil
	}
	if supervisor.ReadRecord(filepath.Join(dir, supervisor.ExitFile), &supervisor.ExitRecord{}) == nil {
		return nil // it ended just now
	}
	if supervisor.ReadRecord(filepath.Join(dir, supervisor.PIDFile), &agent) == nil && agent.Alive() {
		// The supervisor was killed but its agent lives on: stop it ourselves.
		if err := supervisor.SignalGroup(agent.PID, syscall.SIGTERM); err != nil {
			return err
		}
		l.bg.Add(1)
		go l.escalate(cfg, dir, agent)
		return nil
	}
	// Supervisor and agent are both gone (killed together: the agent dies with its
	// supervisor), without a reap: what the agent left, a container its runc still runs
	// among it, is reaped now rather than at the next agent's start on this node.
	if err := supervisor.WriteRecord(filepath.Join(dir, supervisor.ExitFile), supervisor.ExitRecord{Canceled: true, Reason: "canceled; ended without a recorded exit status", Ended: time.Now()}); err != nil {
		return err
	}
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		l.reap(cfg, dir)
	}()
	return nil
}

// reap runs the agent's reaper (`<agent> reap --yes`, with the configured environment, which
// holds the node's settings) for a container whose supervisor could not, appending its
// output to the container's supervisor log. The reaper never touches a live agent's work.
func (l *Launcher) reap(cfg Config, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), supervisor.ReapTimeout)
	defer cancel()
	logf, err := os.OpenFile(filepath.Join(dir, supervisor.SupervisorLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		l.log.Error("reap after a killed supervisor", "dir", dir, "error", err)
		return
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.CommandContext(ctx, cfg.AgentPath, "reap", "--yes")
	cmd.Dir = dir
	cmd.Env = agentEnv(cfg, launcher.SubmitRequest{})
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		l.log.Error("reap after a killed supervisor", "dir", dir, "error", err)
		return
	}
	l.log.Info("reaped what an unsupervised agent left", "dir", dir)
}

// escalate finishes a cancel for an agent without a supervisor: SIGKILL after the grace
// period and a reap of what it left, then an exit record with an unknown exit code (the agent
// is not our child).
func (l *Launcher) escalate(cfg Config, dir string, agent supervisor.ProcRecord) {
	defer l.bg.Done()
	deadline := time.Now().Add(cfg.killGrace())
	for agent.Alive() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	killed := agent.Alive()
	if killed {
		_ = supervisor.SignalGroup(agent.PID, syscall.SIGKILL)
	}
	for i := 0; i < 100 && agent.Alive(); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if killed {
		l.reap(cfg, dir)
	}
	rec := supervisor.ExitRecord{Canceled: true, Reason: "canceled; exit status unknown (supervisor gone)", Started: agent.Started, Ended: time.Now()}
	if err := supervisor.WriteRecord(filepath.Join(dir, supervisor.ExitFile), rec); err != nil {
		l.log.Error("record canceled agent", "dir", dir, "error", err)
	}
}

// Cleanup implements launcher.Cleaner: it removes <work_dir>/<job_id>/<attempt> once no
// container is idle or running. An unknown job is success.
func (l *Launcher) Cleanup(_ context.Context, ref launcher.JobRef) error {
	cfg, err := l.config()
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	attempt, err := parseRef(ref)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	l.submitMu.Lock()
	defer l.submitMu.Unlock()
	jd := supervisor.JobDir(cfg.WorkDir, ref.JobID, attempt)
	st := l.jobStatus(cfg, ref)
	if errors.Is(st.Err, launcher.ErrNotFound) {
		// A half-written submit may have left the directory without its record.
		_ = os.RemoveAll(jd)
		return nil
	}
	if st.Err != nil {
		return fmt.Errorf("cleanup %s: %w", ref.JobID, st.Err)
	}
	for _, c := range st.Containers {
		if c.State == launcher.StateIdle || c.State == launcher.StateRunning {
			return fmt.Errorf("cleanup %s: %w: container %d is %s (cancel it first)", ref.JobID, launcher.ErrConflict, c.Container, c.State)
		}
	}
	// request.json goes first, so an interrupted removal leaves a job that reads as unknown.
	if err := os.Remove(filepath.Join(jd, supervisor.RequestFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cleanup %s: %w", ref.JobID, err)
	}
	if err := os.RemoveAll(jd); err != nil {
		return fmt.Errorf("cleanup %s: %w", ref.JobID, err)
	}
	// The job's directory goes too once its last attempt is gone.
	_ = os.Remove(filepath.Dir(jd))
	l.log.Info("cleaned up", "job_id", ref.JobID, "attempt", attempt)
	return nil
}
