// Command cts-agent runs one container of a CTS job on a worker node. A launcher (HTCondor,
// the local plugin) starts it with the CTS worker environment; admins run it by hand to check
// or debug a node. Its modes (usage below, `cts-agent -h`):
//
//	cts-agent [run] [--job ID] [--container N] [--dry-run] [--keep]
//	cts-agent check
//	cts-agent reap [--yes]
//	CTS_AGENT_MODE=refdata cts-agent [run]
//
// It reads the KBase token and the S3 secret from the files TOKEN_PATH and S3_SECRET_PATH
// name, connects to the coordinator, and reports every step. `run` exits 0 when the
// container's final state was reported (whatever the container did), 1 otherwise, 2 on bad
// configuration. docs/agent.md is the admin's guide.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kbase/cts/agent/internal/config"
	"github.com/kbase/cts/agent/internal/container"
	"github.com/kbase/cts/agent/internal/node"
	"github.com/kbase/cts/agent/internal/runner"
	"github.com/kbase/cts/agent/internal/session"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
	"github.com/kbase/cts/shared/transfer"
)

// Version is set at build time.
var Version = "0.1.0"

// usage is what `cts-agent -h` prints: every mode, one line each, with an example.
const usage = `cts-agent runs one container of a CTS job on a worker node. Launchers (HTCondor, the
local plugin) start it; admins run it by hand to check or debug a node.

Usage:
  cts-agent [run] [--job ID] [--container N] [--dry-run] [--keep]
      Run one container of a job: verify its inputs, run it hardened, upload outputs and logs,
      report every step. Starts only a container no agent has started (download_submitted).
      e.g.  cts-agent run --job 3538a1b2-... --container 0 --dry-run
  cts-agent check
      Check this node: the coordinator, the token's executor role, S3, the container runtime.
      e.g.  cts-agent check
  cts-agent reap [--yes]
      List what dead agents left on this node (containers, runtime state, cgroups, bundles,
      work data); --yes removes it. Live agents' containers are never touched.
      e.g.  cts-agent reap --yes
  CTS_AGENT_MODE=refdata cts-agent [run]
      Stage reference data into REFDATA_HOST_PATH (a launcher starts this mode; the other
      modes, reap included, do what they do whatever CTS_AGENT_MODE says).
  cts-agent version
      Print the version.

The environment configures it (SERVICE_ROOT_URL, TOKEN_PATH, S3_URL, S3_ACCESS_KEY,
S3_SECRET_PATH, JOB_ID, CONTAINER_NUMBER, CTS_AGENT_*): docs/agent.md lists every variable.
Run 'cts-agent run -h' or 'cts-agent reap -h' for a mode's flags.
`

func main() {
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "cts-agent:", err)
	}
	os.Exit(code)
}

func run(argv []string) (int, error) {
	mode := "run"
	if len(argv) > 0 && !strings.HasPrefix(argv[0], "-") {
		mode, argv = argv[0], argv[1:]
	}
	if mode == "run" && os.Getenv("CTS_AGENT_MODE") == "refdata" {
		// Started by a launcher to stage reference data, not to run a job container. Only
		// the run mode stages: the local launcher runs `<agent> reap --yes` with a killed
		// staging task's environment, which must reap, not stage again.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return runRefdata(ctx, os.LookupEnv, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	}
	switch mode {
	case "check":
		return runCheck(argv, os.Stdout)
	case "reap":
		return runReap(argv, os.Stdout)
	case "version":
		fmt.Println(Version)
		return 0, nil
	case "help":
		fmt.Print(usage)
		return 0, nil
	case "run":
	default:
		fmt.Fprint(os.Stderr, usage)
		return 2, fmt.Errorf("unknown mode %q", mode)
	}
	fs := flag.NewFlagSet("cts-agent run", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage+"\nFlags of run:\n")
		fs.PrintDefaults()
	}
	jobID := fs.String("job", "", "job ID (overrides JOB_ID)")
	cn := fs.Int("container", -1, "container number (overrides CONTAINER_NUMBER)")
	dryRun := fs.Bool("dry-run", false, "print the plan (files, paths, command, mounts, limits, runtime) and run nothing")
	keep := fs.Bool("keep", false, "keep the work directory's inputs, outputs and logs when the run ends (default: removed; a hand run's ./cts-work entirely)")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil // the usage was printed
		}
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("run takes no arguments, got %q (flags go before them)", fs.Args())
	}
	if *version {
		fmt.Println(Version)
		return 0, nil
	}
	lookup := func(k string) (string, bool) {
		switch {
		case k == "JOB_ID" && *jobID != "":
			return *jobID, true
		case k == "CONTAINER_NUMBER" && *cn >= 0:
			return strconv.Itoa(*cn), true
		}
		return os.LookupEnv(k)
	}
	cfg, err := config.FromEnv(lookup)
	if err != nil {
		return 2, fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level(cfg.LogLevel)})).
		With("job_id", cfg.JobID, "container", cfg.Container, "attempt", cfg.Attempt)
	if *dryRun {
		return runDry(cfg, log, os.Stdout)
	}
	return runJob(cfg, *keep, log)
}

// signals turns the first SIGTERM/SIGINT into a graceful stop (cancel with
// runner.ErrShutdown: stop the container, upload its logs, report) and the second into a
// hurry (skip the log upload, give the final report a few seconds).
func signals(log *slog.Logger, stop context.CancelCauseFunc) (hurry <-chan struct{}, release func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	h := make(chan struct{})
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			log.Warn("stop signal received: stopping the container gracefully (a second signal skips the log upload)", "signal", s.String())
			stop(runner.ErrShutdown)
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			log.Warn("second stop signal: skipping the log upload, reporting and exiting", "signal", s.String())
			close(h)
		case <-done:
		}
	}()
	return h, func() { signal.Stop(sigs); close(done) }
}

// attemptFile makes an attempt name safe as a file name.
var attemptFile = regexp.MustCompile(`[^A-Za-z0-9._-]`)

func runJob(cfg config.Config, keep bool, log *slog.Logger) (code int, err error) {
	// The last line: what the agent's work cost the node's CPU, its own and its runtime
	// processes' (runc, which it waited for), for tracing a job's overhead.
	defer func() {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("agent done", "cpu_ms", cpuMs(syscall.RUSAGE_SELF), "children_cpu_ms", cpuMs(syscall.RUSAGE_CHILDREN))
		}
	}()
	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	hurry, release := signals(log, stop)
	defer release()

	_, statErr := os.Stat(cfg.WorkDir)
	// A hand run owns the default ./cts-work when it makes it: it removes all of it at the end.
	own := !cfg.WorkDirGiven && errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return 1, fmt.Errorf("work directory: %w", err)
	}
	journal := filepath.Join(cfg.WorkDir, "events-"+attemptFile.ReplaceAllString(cfg.Attempt, "_")+".journal")
	// The work data goes when the run ends (it runs after the session is closed), unless
	// --keep, and unless events wait in the journal (the report failed: the journal and the
	// logs are then what a restart or an admin needs). A refused run leaves nothing either.
	defer func() {
		if keep || (code != 0 && pending(journal)) {
			return
		}
		if cerr := node.CleanWorkDir(cfg.WorkDir, own); cerr != nil {
			log.Warn("clean the work directory", "error", cerr)
		}
	}()
	rt, kind, err := newRuntime(ctx, cfg.Node, cfg.WorkDir, log)
	if err != nil {
		return 1, fmt.Errorf("container runtime: %w", err)
	}
	log.Debug("container runtime ready", "runtime", kind)
	// Register with the node before anything else, so that should this process die, the next
	// agent (or `cts-agent reap`) removes what it leaves.
	reg, err := node.Open(cfg.NodeDir)
	if err != nil {
		return 1, err
	}
	unregister, err := reg.Register(node.Registration{Attempt: cfg.Attempt, WorkDir: cfg.WorkDir, OwnWorkDir: own, PID: os.Getpid(), Started: time.Now()})
	if err != nil {
		return 1, err
	}
	defer unregister()
	if w, ok := rt.(container.Waiter); ok {
		// The job's container, once it exited by itself, is deleted here: after the final
		// state is reported (its deletion takes no CPU from the job's path), before this agent
		// unregisters.
		defer w.Wait()
	}
	// A previous process of this attempt (restarted by its launcher, or run again by hand)
	// may have left its container: it cannot be picked up, so it goes first.
	id := runner.ContainerID(cfg.JobID, cfg.Container, cfg.Attempt)
	if rt.Known(ctx, id) {
		log.Warn("removing the container a previous process of this attempt left", "id", id)
		if err := rt.Remove(ctx, id); err != nil {
			return 1, fmt.Errorf("remove the previous container of this attempt: %w", err)
		}
	}
	// The node's housekeeping runs while the agent connects to the coordinator (it touches
	// only the runtime's and the node's files, under their locks) and ends before anything of
	// the job runs.
	housekeeping := make(chan struct{})
	go func() {
		defer close(housekeeping)
		// Leftovers of agents that died on this node (never those of live agents sharing the
		// runtime or the node directory).
		if left, err := reapNode(ctx, rt, reg, true); err != nil {
			log.Warn("reap leftovers of dead agents", "runtime", kind, "error", err, "removed", len(left))
		} else if len(left) > 0 {
			log.Info("reaped leftovers of dead agents", "runtime", kind, "removed", len(left))
		}
		log.Debug("leftovers checked")
		// The node's image cache stays within its bounds (never dropping an image a live
		// agent uses); a failure here costs disk, not the job.
		if pruned, err := rt.PruneImages(ctx, cfg.ImageCacheMaxBytes, cfg.ImageCacheMaxAge); err != nil {
			log.Warn("prune the image cache", "runtime", kind, "error", err)
		} else {
			for _, p := range pruned {
				log.Info("pruned an image from the node's cache", "image", p.Image, "bytes", p.Bytes, "last_used", p.LastUsed)
			}
		}
		log.Debug("image cache checked")
	}()
	defer func() { <-housekeeping }()
	s3c, err := transfer.NewS3Client(ctx, transfer.S3Config{
		Endpoint: cfg.S3URL, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3Secret, Region: cfg.S3Region, Insecure: cfg.S3Insecure,
	})
	if err != nil {
		return 1, fmt.Errorf("s3 client: %w", err)
	}
	log.Debug("connecting to the coordinator")
	sess, a, err := session.Dial(ctx, session.Config{
		ServiceURL: cfg.ServiceURL, Token: cfg.Token, Log: log,
		JournalPath: journal, ReconnectFor: cfg.CoordinatorTimeout,
		Hello: protocol.Hello{JobID: cfg.JobID, Container: cfg.Container, Attempt: cfg.Attempt, AgentVersion: Version},
	})
	if err != nil {
		if errors.Is(err, session.ErrUnreachable) {
			return 1, fmt.Errorf("the coordinator at %s did not answer for %s (CTS_AGENT_COORDINATOR_TIMEOUT_MIN); nothing was run: check that it runs and that this node reaches it, then start the agent again: %w",
				cfg.ServiceURL, cfg.CoordinatorTimeout, err)
		}
		return 1, fmt.Errorf("connect to the coordinator: %w", err)
	}
	defer sess.Close()
	log.Info("assignment received", "image", a.Image, "inputs", len(a.Inputs), "runtime", kind, "container_state", a.ContainerState)
	<-housekeeping
	if len(sess.Recovered()) > 0 || a.NextSeq > 1 {
		return resume(ctx, sess, a, log)
	}
	if err := startable(a); err != nil {
		return 1, err
	}
	// The transfer client counts bytes per file; the runner sums them into the progress
	// reports it sends through the session. Transfers only run inside r.Run, after r is set.
	var r *runner.Runner
	xfer := transfer.New(s3c, transfer.Config{OnProgress: func(path string, n int64) { r.TransferProgress(path, n) }})
	r = runner.New(runner.Config{
		WorkDir: cfg.WorkDir, Attempt: cfg.Attempt, HostPath: cfg.HostPath, Network: cfg.Network,
		RefdataHostPath: cfg.RefdataHostPath, LiveLog: sess, Progress: sess, Hurry: hurry,
		KillGrace: cfg.Budget.ContainerStop, FinalTimeout: cfg.Budget.FinalReport, LogMaxBytes: cfg.LogMaxBytes,
		Unreachable: sess.Unreachable(),
	}, sess, xfer, rt, sess.Cancels(), log)
	if err := r.Run(ctx, a); err != nil {
		if errors.Is(err, session.ErrRefused) {
			return 1, err
		}
		if errors.Is(err, runner.ErrUnreachable) || errors.Is(err, session.ErrUnreachable) {
			return 1, fmt.Errorf("the coordinator at %s did not answer for %s (CTS_AGENT_COORDINATOR_TIMEOUT_MIN): the agent stopped, "+
				"its container is stopped, and the events it could not deliver are kept in %s with the container's logs: once the coordinator answers, "+
				"start the agent again with the same attempt (CTS_AGENT_ATTEMPT=%s) to deliver them, or cancel the job: %w",
				cfg.ServiceURL, cfg.CoordinatorTimeout, journal, cfg.Attempt, err)
		}
		return 1, fmt.Errorf("run: %w", err)
	}
	return 0, nil
}

// cpuMs is the user and system CPU of who (syscall.RUSAGE_SELF or RUSAGE_CHILDREN), in
// milliseconds; -1 if unknown.
func cpuMs(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return -1
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
}

// pending reports whether the event journal at path holds anything (it is emptied whenever
// no event waits for its acknowledgement).
func pending(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Size() > 0
}

// startable refuses, before anything is downloaded, an assignment whose container another
// agent has already started: a new attempt can only start a container that is
// download_submitted. (A coordinator that does not send the state is trusted.)
func startable(a *protocol.Assignment) error {
	if a.ContainerState == "" || a.ContainerState == job.DownloadSubmitted {
		return nil
	}
	by := ""
	if a.ContainerAttempt != "" {
		by = " by agent attempt " + a.ContainerAttempt
	}
	return fmt.Errorf("container %d of job %s is %s (started%s): run starts only a container no agent has started yet (state %s); "+
		"use --dry-run to see its plan, or cancel the job and submit it again", a.Container, a.JobID, a.ContainerState, by, job.DownloadSubmitted)
}

// reapNode removes (or, without apply, lists) what dead agents left: first the runtime's
// containers, state, cgroups and bundles, then their work data. Bundles the runtime still
// knows are left to it.
func reapNode(ctx context.Context, rt container.Runtime, reg *node.Registry, apply bool) ([]string, error) {
	var lines []string
	left, rerr := rt.Reap(ctx, apply)
	for _, l := range left {
		lines = append(lines, l.String())
	}
	nleft, nerr := reg.Reap(apply, func(id string) bool { return rt.Known(ctx, id) })
	for _, l := range nleft {
		lines = append(lines, l.String())
	}
	return lines, errors.Join(rerr, nerr)
}

// runReap is `cts-agent reap`: it lists what dead agents left on this node, in every runtime
// it can reach (runc under CTS_AGENT_RUNC_ROOT, the Docker engine), and removes it with
// --yes. It needs only the node's settings (CTS_AGENT_RUNC_ROOT, CTS_AGENT_NODE_DIR, ...).
func runReap(argv []string, out io.Writer) (int, error) {
	fs := flag.NewFlagSet("cts-agent reap", flag.ContinueOnError)
	yes := fs.Bool("yes", false, "remove what is listed (default: list only)")
	if err := fs.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("reap takes no arguments, got %q", fs.Args())
	}
	nc, err := config.NodeFromEnv(os.LookupEnv)
	if err != nil {
		return 2, fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	reg, err := node.Open(nc.NodeDir)
	if err != nil {
		return 1, err
	}
	var runtimes []container.Runtime
	var names []string
	if nc.Runtime != "docker" {
		kind := nc.Runtime
		if kind == "auto" {
			kind = "oci"
		}
		engine, _ := ociEngine(nc, kind)
		if o, err := newOCI(nc, engine, "", log); err == nil {
			runtimes, names = append(runtimes, o), append(names, "oci ("+engine+", root "+nc.RuncRoot+")")
		} else if config.OCI(nc.Runtime) {
			return 1, err
		}
	}
	if !config.OCI(nc.Runtime) {
		d := container.NewDocker(container.DockerConfig{Socket: nc.DockerSocket, StateDir: nc.NodeDir, Logger: log})
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, perr := d.Ping(pctx)
		pcancel()
		if perr == nil {
			runtimes, names = append(runtimes, d), append(names, "docker (engine at "+nc.DockerSocket+")")
		} else if nc.Runtime == "docker" {
			return 1, perr
		}
	}
	fmt.Fprintf(out, "runtimes: %s; node dir %s\n", strings.Join(names, ", "), nc.NodeDir)
	var lines []string
	var errs []error
	for _, rt := range runtimes {
		left, err := rt.Reap(ctx, *yes)
		for _, l := range left {
			lines = append(lines, l.String())
		}
		errs = append(errs, err)
	}
	nleft, err := reg.Reap(*yes, func(id string) bool {
		for _, rt := range runtimes {
			if rt.Known(ctx, id) {
				return true
			}
		}
		return false
	})
	for _, l := range nleft {
		lines = append(lines, l.String())
	}
	errs = append(errs, err)
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	switch {
	case len(lines) == 0:
		fmt.Fprintln(out, "nothing left by dead agents on this node")
	case *yes:
		fmt.Fprintf(out, "removed %d leftovers of dead agents\n", len(lines))
	default:
		fmt.Fprintf(out, "%d leftovers of dead agents; run 'cts-agent reap --yes' to remove them\n", len(lines))
	}
	if err := errors.Join(errs...); err != nil {
		return 1, err
	}
	return 0, nil
}

// resume handles a restart of this attempt's agent process (the launcher restarted it, or an
// admin ran it again): a previous process already reported events. The journal's events are
// delivered; if they end the container, that is all; otherwise the container the previous
// process ran is gone (removed at start) and its run cannot be picked up, so the truthful
// final report is an error.
func resume(ctx context.Context, sess *session.Session, a *protocol.Assignment, log *slog.Logger) (int, error) {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := sess.Flush(fctx); err != nil {
		return 1, fmt.Errorf("resend journaled events: %w", err)
	}
	rec := sess.Recovered()
	if len(rec) > 0 && rec[len(rec)-1].State.Terminal() {
		log.Info("the previous agent process had reported the final state: delivered", "state", rec[len(rec)-1].State)
		return 0, nil
	}
	if a.ContainerState.Terminal() {
		// The coordinator had applied this attempt's final event already (its
		// acknowledgement was lost): nothing is left to report.
		log.Info("the container's final state was already applied", "state", a.ContainerState)
		return 0, nil
	}
	log.Warn("the previous agent process of this attempt died mid-run (its container was removed): reporting an error", "next_seq", a.NextSeq)
	ev := protocol.Event{State: job.Error, Time: time.Now().UTC(),
		Error:      "The job's agent was restarted while the container ran; the run cannot be resumed.",
		AdminError: fmt.Sprintf("agent process restarted for attempt with %d events already reported", a.NextSeq-1+int64(len(rec)))}
	if err := sess.Report(fctx, ev); err != nil {
		return 1, fmt.Errorf("report: %w", err)
	}
	return 0, nil
}

func level(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
