// Package htcondor is the "htcondor" launcher: it runs each CTS job as one HTCondor cluster
// with one proc per container (ProcId = container number), each proc running the static
// cts-agent, by driving condor_submit, condor_q -json, condor_history -json and condor_rm
// (paths and environment configurable, so tests point them at test/minicondor). Its binary is
// cmd/cts-launcher-htcondor, served through shared/launcher.
//
// State lives in HTCondor, not in the plugin: every proc carries +CTSJobID, +CTSAttempt,
// +CTSContainers and +CTSContainerNumber, so a restarted plugin (or coordinator) finds its
// clusters again. Submit is idempotent per (job, attempt): it first looks for a cluster with
// those attributes in the queue and then in the history, and submits only when there is none.
// Within one plugin process submits are serialised; two coordinators submitting the same job
// at the same instant are not protected against (the coordinator's conditional state update
// lets only one record the launch; the reconciler's cancel of the loser's cluster is manual).
//
// JobStatus maps to launcher states as follows:
//
//	1 idle, 2 running, 6 transferring, 7 suspended → idle / running / running / running
//	3 removed, still in the queue (being stopped)    → running (Reason: the RemoveReason)
//	3 removed, in the history                        → removed, or exited when the proc had
//	                                                   exited and was held by on_exit_hold
//	                                                   before the removal
//	4 completed                                      → exited (ExitCode, or 128+ExitSignal)
//	5 held after the agent exited (on_exit_hold)     → exited with its code; Reason = HoldReason
//	5 held for any other reason (transfer, duration) → held; Reason = HoldReason, HoldCode
//
// An agent exits non-zero only when it could not report its container's final state, so the
// submit description holds such procs (on_exit_hold = ExitCode =!= 0) instead of rerunning
// them; the coordinator's reconciler ends the job and removes the cluster.
//
// It must not import anything of ours but shared/..., must never put secrets into a submit
// description (the worker environment names secret files), and must not pass its own
// environment to the tools beyond PATH, HOME and the configured condor_env.
package htcondor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kbase/cts/shared/launcher"
)

// Name is the plugin's name in Info.
const Name = "htcondor"

// DetailAttributes are the ClassAd attributes the plugin reads and returns as a container's
// Details (the runner_status subset of the Python service's, plus the plugin's own).
var DetailAttributes = []string{
	"Iwd", "Err", "Out", "UserLog",
	"ClusterId", "ProcId", "CTSJobID", "CTSContainerNumber", "CTSAttempt", "CTSContainers",
	"RequestCpus", "RequestDisk", "RequestMemory", "CpusProvisioned", "DiskProvisioned", "GPUsProvisioned",
	"CpusUsage", "RemoteUserCpu", "RemoteSysCpu", "CumulativeRemoteSysCpu", "CumulativeRemoteUserCpu",
	"DiskUsage", "DiskUsage_RAW", "ResidentSetSize", "ResidentSetSize_RAW", "ImageSize", "ImageSize_RAW", "MemoryUsage",
	"Owner", "User", "CondorVersion", "CondorPlatform",
	"Environment", "Requirements", "TransferInput", "LeaveJobInQueue",
	"Rank", "JobPrio", "JobStatus", "LastJobStatus", "ExitCode", "ExitStatus", "ExitBySignal", "ExitSignal",
	"JobRunCount", "NumRestarts", "NumJobStarts", "HoldReason", "HoldReasonCode", "HoldReasonSubCode",
	"VacateReason", "VacateReasonCode", "RemoveReason", "WantGracefulRemoval",
	"ConcurrencyLimits", "AccountingGroup", "JobBatchName", "AllowedJobDuration",
	"JobStartDate", "CommittedTime", "CommittedSuspensionTime", "CompletionDate", "CumulativeSuspensionTime",
	"CumulativeTransferTime", "JobCurrentFinishTransferInputDate", "JobCurrentFinishTransferOutputDate",
	"JobCurrentStartDate", "JobCurrentStartExecutingDate", "JobCurrentStartTransferInputDate",
	"JobCurrentStartTransferOutputDate", "RemoteWallClockTime", "EnteredCurrentStatus", "QDate",
	"StartdPrincipal", "RemoteHost", "LastRemoteHost",
}

// JobStatus codes of HTCondor.
const (
	statusIdle         = 1
	statusRunning      = 2
	statusRemoved      = 3
	statusCompleted    = 4
	statusHeld         = 5
	statusTransferring = 6
	statusSuspended    = 7
)

// holdCodeJobPolicy is HoldReasonCode 3: a job policy expression (here on_exit_hold) held it.
const holdCodeJobPolicy = 3

// statusBatch bounds the clusters named in one condor_q/condor_history constraint.
const statusBatch = 100

// Options are the launcher's wiring (not its configuration, which comes by Configure).
type Options struct {
	// Logger receives the launcher's own logs; nil discards them.
	Logger *slog.Logger
}

// Launcher is the HTCondor launcher. It is safe for concurrent use.
type Launcher struct {
	log *slog.Logger

	mu    sync.RWMutex
	cfg   *Config
	tools *tools

	// submitMu serialises Submit's look-then-submit so one process never submits a key twice.
	submitMu sync.Mutex

	// The credential sweeper: started by the first Configure, stopped by Close.
	sweepOnce, closeOnce sync.Once
	sweepStop, sweepDone chan struct{}
	sweeping             bool // set inside sweepOnce
}

var _ launcher.Launcher = (*Launcher)(nil)

// New returns an unconfigured HTCondor launcher.
func New(opts Options) *Launcher {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Launcher{log: logger, sweepStop: make(chan struct{}), sweepDone: make(chan struct{})}
}

// Close stops the credential sweeper and waits for it. The plugin process calls it never
// (it ends with its process); tests and embedders do.
func (l *Launcher) Close() error {
	l.closeOnce.Do(func() {
		close(l.sweepStop)
		l.sweepOnce.Do(func() {}) // no sweeper may start after Close
		if l.sweeping {
			<-l.sweepDone
		}
	})
	return nil
}

// Info implements launcher.Launcher. The plugin has no Cleanup: HTCondor keeps and expires
// its own history.
func (l *Launcher) Info(context.Context) (launcher.Info, error) {
	return launcher.Info{Name: Name, APIVersion: launcher.APIVersion}, nil
}

// Configure implements launcher.Launcher: it parses and validates a Config and creates
// initial_dir. On error the previous configuration stays.
func (l *Launcher) Configure(_ context.Context, data []byte) error {
	cfg, err := ParseConfig(data)
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	if err := os.MkdirAll(cfg.InitialDir, 0o755); err != nil {
		return fmt.Errorf("configure: %w: initial_dir: %v", launcher.ErrInvalidConfig, err)
	}
	l.mu.Lock()
	l.cfg, l.tools = &cfg, newTools(cfg)
	l.mu.Unlock()
	l.sweepOnce.Do(func() {
		l.sweeping = true
		go func() {
			defer close(l.sweepDone)
			l.sweep(l.sweepStop)
		}()
	})
	l.log.Info("configured", "initial_dir", cfg.InitialDir, "agent", cfg.AgentPath+cfg.AgentURL, "condor_submit", cfg.CondorSubmit)
	return nil
}

func (l *Launcher) current() (*Config, *tools, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.cfg == nil {
		return nil, nil, launcher.ErrNotConfigured
	}
	return l.cfg, l.tools, nil
}

// Submit implements launcher.Launcher.
func (l *Launcher) Submit(ctx context.Context, req launcher.SubmitRequest) (launcher.SubmitResponse, error) {
	cfg, t, err := l.current()
	if err != nil {
		return launcher.SubmitResponse{}, fmt.Errorf("submit: %w", err)
	}
	if err := req.Validate(); err != nil {
		return launcher.SubmitResponse{}, fmt.Errorf("submit: %w", err)
	}
	desc, err := Description(*cfg, req)
	if err != nil {
		return launcher.SubmitResponse{}, fmt.Errorf("submit: %w", err)
	}
	l.submitMu.Lock()
	defer l.submitMu.Unlock()
	cluster, n, found, err := l.find(ctx, t, req.JobID, req.Attempt)
	if err != nil {
		return launcher.SubmitResponse{}, fmt.Errorf("submit %s: look for an earlier submit: %w", req.JobID, err)
	}
	if found {
		if n != req.Containers {
			return launcher.SubmitResponse{}, fmt.Errorf("submit %s attempt %d: %w: cluster %d has %d containers, the request %d",
				req.JobID, req.Attempt, launcher.ErrConflict, cluster, n, req.Containers)
		}
		return launcher.SubmitResponse{Handle: strconv.FormatInt(cluster, 10), Existing: true}, nil
	}
	cluster, err = l.submit(ctx, cfg, t, req, desc)
	if err != nil {
		if len(req.Credentials) > 0 {
			l.dropCredentials(ctx, cfg, t, req)
		}
		return launcher.SubmitResponse{}, fmt.Errorf("submit %s: %w", req.JobID, err)
	}
	l.log.Info("submitted", "job_id", req.JobID, "attempt", req.Attempt, "cluster", cluster, "containers", req.Containers)
	return launcher.SubmitResponse{Handle: strconv.FormatInt(cluster, 10)}, nil
}

// submit writes the credential and submit files and runs condor_submit.
func (l *Launcher) submit(ctx context.Context, cfg *Config, t *tools, req launcher.SubmitRequest, desc string) (int64, error) {
	for n, c := range req.Credentials {
		if err := writePrivate(CredentialFile(*cfg, req.JobID, req.Attempt, n), c); err != nil {
			return 0, fmt.Errorf("container %d: %w", n, err)
		}
	}
	file := filepath.Join(cfg.InitialDir, fmt.Sprintf("cts-%s-%d.sub", req.JobID, req.Attempt))
	if err := os.WriteFile(file, []byte(desc), 0o644); err != nil {
		return 0, fmt.Errorf("write submit file: %w", err)
	}
	out, err := t.run(ctx, cfg.InitialDir, cfg.CondorSubmit, "-terse", file)
	if err != nil {
		return 0, err
	}
	return parseTerse(out, req.Containers)
}

// dropCredentials removes the credential files of a failed submit, unless a cluster of the
// (job, attempt) exists after all (condor_submit may fail after the schedd took the procs,
// which then need their files) or that cannot be told now (the sweep decides later).
func (l *Launcher) dropCredentials(ctx context.Context, cfg *Config, t *tools, req launcher.SubmitRequest) {
	if _, _, found, err := l.find(ctx, t, req.JobID, req.Attempt); err != nil || found {
		l.log.Warn("submit failed; its credential files stay until the sweep finds the procs gone",
			"job_id", req.JobID, "attempt", req.Attempt, "cluster_found", found, "error", err)
		return
	}
	if err := removeCredentials(*cfg, req.JobID, req.Attempt, req.Containers); err != nil {
		l.log.Warn("submit failed and its credential files could not be removed", "job_id", req.JobID, "attempt", req.Attempt, "error", err)
	}
}

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
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write credential: %w", werr)
	}
	return nil
}

// parseTerse reads condor_submit -terse output, "C.0 - C.N-1".
func parseTerse(out []byte, n int) (int64, error) {
	first, last, ok := strings.Cut(strings.TrimSpace(string(out)), " - ")
	c, p, ok1 := strings.Cut(first, ".")
	lc, lp, ok2 := strings.Cut(strings.TrimSpace(last), ".")
	cluster, err := strconv.ParseInt(c, 10, 64)
	if !ok || !ok1 || !ok2 || err != nil || c != lc || p != "0" || lp != strconv.Itoa(n-1) {
		return 0, fmt.Errorf("%w: unexpected condor_submit output %q for %d procs", launcher.ErrUnavailable, out, n)
	}
	return cluster, nil
}

// find looks for the cluster of (jobID, attempt) in the queue, then in the history, and
// returns its ClusterId and container count.
func (l *Launcher) find(ctx context.Context, t *tools, jobID string, attempt int) (int64, int, bool, error) {
	constraint := fmt.Sprintf("CTSJobID == %s && CTSAttempt == %d", strconv.Quote(jobID), attempt)
	attrs := []string{"ClusterId", "ProcId", "CTSContainers"}
	for _, tool := range []string{t.cfg.CondorQ, t.cfg.CondorHistory} {
		ads, err := t.query(ctx, tool, constraint, attrs)
		if err != nil {
			return 0, 0, false, err
		}
		if len(ads) == 0 {
			continue
		}
		cluster, _ := ads[0].int("ClusterId")
		n, _ := ads[0].int("CTSContainers")
		for _, a := range ads[1:] {
			if c, _ := a.int("ClusterId"); c != cluster {
				l.log.Warn("several clusters for one job attempt", "job_id", jobID, "attempt", attempt, "clusters", []int64{cluster, c})
			}
		}
		return cluster, int(n), true, nil
	}
	return 0, 0, false, nil
}

// parseHandle reads a handle (a ClusterId).
func parseHandle(ref launcher.JobRef) (int64, error) {
	c, err := strconv.ParseInt(ref.Handle, 10, 64)
	if err != nil || c <= 0 {
		return 0, fmt.Errorf("%w: handle %q is not an HTCondor cluster id", launcher.ErrInvalidRequest, ref.Handle)
	}
	if err := launcher.ValidateJobID(ref.JobID); err != nil {
		return 0, err
	}
	return c, nil
}

func clusterConstraint(clusters []int64) string {
	parts := make([]string, len(clusters))
	for i, c := range clusters {
		parts[i] = "ClusterId == " + strconv.FormatInt(c, 10)
	}
	return strings.Join(parts, " || ")
}

// Status implements launcher.Launcher: one condor_q and one condor_history per 100 clusters.
func (l *Launcher) Status(ctx context.Context, refs []launcher.JobRef) ([]launcher.JobStatus, error) {
	_, t, err := l.current()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	out := make([]launcher.JobStatus, len(refs))
	clusters := make([]int64, len(refs))
	var todo []int64
	seen := map[int64]bool{}
	for i, ref := range refs {
		out[i].JobID = ref.JobID
		c, err := parseHandle(ref)
		if err != nil {
			out[i].Err = err
			continue
		}
		clusters[i] = c
		if !seen[c] {
			seen[c] = true
			todo = append(todo, c)
		}
	}
	queue := map[int64]map[int64]ad{}   // cluster → proc → ad
	history := map[int64]map[int64]ad{} // same, from the history
	for start := 0; start < len(todo); start += statusBatch {
		batch := todo[start:min(start+statusBatch, len(todo))]
		// The queue first: a proc that leaves it meanwhile is then found in the history.
		if err := collect(ctx, t, t.cfg.CondorQ, batch, queue); err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
		if err := collect(ctx, t, t.cfg.CondorHistory, batch, history); err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
	}
	for i, ref := range refs {
		if out[i].Err != nil {
			continue
		}
		out[i].Containers, out[i].Err = containers(ref, clusters[i], queue[clusters[i]], history[clusters[i]])
	}
	return out, nil
}

func collect(ctx context.Context, t *tools, tool string, clusters []int64, into map[int64]map[int64]ad) error {
	ads, err := t.query(ctx, tool, clusterConstraint(clusters), DetailAttributes)
	if err != nil {
		return err
	}
	for _, a := range ads {
		c, ok1 := a.int("ClusterId")
		p, ok2 := a.int("ProcId")
		if !ok1 || !ok2 {
			continue
		}
		if into[c] == nil {
			into[c] = map[int64]ad{}
		}
		into[c][p] = a
	}
	return nil
}

// containers builds one job's container list from its procs.
func containers(ref launcher.JobRef, cluster int64, queue, history map[int64]ad) ([]launcher.ContainerStatus, error) {
	if len(queue) == 0 && len(history) == 0 {
		return nil, fmt.Errorf("%w: cluster %d of job %s is in neither the queue nor the history", launcher.ErrNotFound, cluster, ref.JobID)
	}
	n := int64(0)
	for _, m := range []map[int64]ad{queue, history} {
		for p, a := range m {
			if got := a.str("CTSJobID"); got != ref.JobID {
				return nil, fmt.Errorf("%w: cluster %d belongs to job %q, not %s", launcher.ErrNotFound, cluster, got, ref.JobID)
			}
			if c, ok := a.int("CTSContainers"); ok {
				n = max(n, c)
			}
			n = max(n, p+1)
		}
	}
	cs := make([]launcher.ContainerStatus, n)
	for p := range n {
		attempt := fmt.Sprintf("%d.%d", cluster, p)
		if a, ok := queue[p]; ok {
			cs[p] = containerStatus(a, true)
		} else if a, ok := history[p]; ok {
			cs[p] = containerStatus(a, false)
		} else {
			cs[p] = launcher.ContainerStatus{State: launcher.StateUnknown,
				Reason: "proc " + attempt + " is in neither the queue nor the history"}
		}
		cs[p].Container, cs[p].Attempt = int(p), attempt
	}
	return cs, nil
}

func unixTime(a ad, names ...string) time.Time {
	for _, n := range names {
		if s, ok := a.int(n); ok && s > 0 {
			return time.Unix(s, 0)
		}
	}
	return time.Time{}
}

// exitCode is the proc's exit code, 128+signal when a signal ended it, nil when it has not
// exited.
func exitCode(a ad) *int {
	if a.boolean("ExitBySignal") {
		if s, ok := a.int("ExitSignal"); ok {
			c := 128 + int(s)
			return &c
		}
	}
	if c, ok := a.int("ExitCode"); ok {
		v := int(c)
		return &v
	}
	return nil
}

// containerStatus maps one proc's ad (see the package comment for the table).
func containerStatus(a ad, inQueue bool) launcher.ContainerStatus {
	status, _ := a.int("JobStatus")
	last, _ := a.int("LastJobStatus")
	holdCode, _ := a.int("HoldReasonCode")
	code := exitCode(a)
	cs := launcher.ContainerStatus{
		ExitCode: code,
		Started:  unixTime(a, "JobCurrentStartDate", "JobStartDate"),
		HoldCode: int(holdCode),
	}
	ended := unixTime(a, "CompletionDate", "EnteredCurrentStatus")
	holdReason := a.str("HoldReason")
	if holdReason != "" {
		holdReason = fmt.Sprintf("%s (HoldReasonCode %d)", holdReason, holdCode)
	}
	switch {
	case status == statusIdle:
		cs.State = launcher.StateIdle
	case status == statusRunning || status == statusTransferring || status == statusSuspended:
		cs.State = launcher.StateRunning
	case status == statusRemoved && inQueue:
		cs.State, cs.Reason = launcher.StateRunning, "being removed: "+a.str("RemoveReason")
	case status == statusRemoved && last == statusHeld && holdCode == holdCodeJobPolicy && code != nil:
		cs.State, cs.Ended = launcher.StateExited, ended
		cs.Reason = "held after exiting (" + holdReason + "), then removed: " + a.str("RemoveReason")
	case status == statusRemoved:
		cs.State, cs.Ended, cs.Reason = launcher.StateRemoved, ended, a.str("RemoveReason")
		cs.ExitCode = nil
	case status == statusCompleted:
		cs.State, cs.Ended = launcher.StateExited, ended
	case status == statusHeld && holdCode == holdCodeJobPolicy && code != nil:
		cs.State, cs.Ended, cs.Reason = launcher.StateExited, ended, "held after exiting: "+holdReason
	case status == statusHeld:
		cs.State, cs.Reason = launcher.StateHeld, holdReason
	default:
		cs.State, cs.Reason = launcher.StateUnknown, fmt.Sprintf("JobStatus %d", status)
	}
	if cpu, ok := cpuSeconds(a); ok {
		u := &launcher.Usage{CPUSeconds: cpu}
		if w, ok := a.wallSeconds(); ok {
			u.WallSeconds = w
		}
		if m, ok := a.memoryMiB(); ok {
			u.MaxMemoryBytes = int64(m * (1 << 20))
		}
		if c, ok := a.int("RequestCpus"); ok {
			u.CPUs = int(c)
		}
		cs.Usage = u
	}
	if b, err := json.Marshal(a.attrs); err == nil {
		cs.Details = b
	}
	return cs
}

func cpuSeconds(a ad) (float64, bool) {
	u, ok1 := a.float("RemoteUserCpu")
	s, ok2 := a.float("RemoteSysCpu")
	return u + s, ok1 || ok2
}

// Cancel implements launcher.Launcher: condor_rm of the job's cluster (graceful: the submit
// description asks for SIGTERM, then SIGKILL after job_max_vacate_time). A cluster that is
// gone is success.
func (l *Launcher) Cancel(ctx context.Context, ref launcher.JobRef) error {
	_, t, err := l.current()
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	cluster, err := parseHandle(ref)
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	constraint := fmt.Sprintf("ClusterId == %d && CTSJobID == %s", cluster, strconv.Quote(ref.JobID))
	_, rmErr := t.run(ctx, t.cfg.InitialDir, t.cfg.CondorRm, "-reason", "Canceled by the CTS", "-constraint", constraint)
	if rmErr == nil {
		l.log.Info("removed", "job_id", ref.JobID, "cluster", cluster)
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("cancel %s: %w", ref.JobID, ctx.Err())
	}
	// condor_rm fails when nothing matched: if nothing of the cluster is left to remove, the
	// cancel is done.
	left, err := t.query(ctx, t.cfg.CondorQ, constraint+" && JobStatus != 3", []string{"ClusterId", "ProcId"})
	if err != nil {
		return fmt.Errorf("cancel %s: %w", ref.JobID, errors.Join(rmErr, err))
	}
	if len(left) == 0 {
		return nil
	}
	return fmt.Errorf("cancel %s: %w", ref.JobID, rmErr)
}
