// Command cts-agent runs one container of a CTS job on a worker node. A launcher (HTCondor,
// the local plugin) starts it with the CTS worker environment; admins can run it by hand.
//
//	cts-agent [run] [--job ID] [--container N] [--dry-run]
//	cts-agent check
//
// It reads the KBase token and the S3 secret from the files TOKEN_PATH and S3_SECRET_PATH
// name, connects to the coordinator, and reports every step. `run` exits 0 when the
// container's final state was reported (whatever the container did), 1 otherwise, 2 on bad
// configuration. `--dry-run` prints the plan and runs nothing; `check` checks the node's
// configuration, one line per check. docs/agent.md is the admin's guide.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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
	"github.com/kbase/cts/agent/internal/runner"
	"github.com/kbase/cts/agent/internal/session"
	"github.com/kbase/cts/agent/internal/transfer"
	"github.com/kbase/cts/shared/job"
	"github.com/kbase/cts/shared/protocol"
)

// Version is set at build time.
var Version = "0.1.0"

func main() {
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "cts-agent:", err)
	}
	os.Exit(code)
}

func run(argv []string) (int, error) {
	if os.Getenv("CTS_AGENT_MODE") == "refdata" {
		// Started by a launcher to stage reference data, not to run a job container.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return runRefdata(ctx, os.LookupEnv, slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	}
	if len(argv) > 0 && argv[0] == "check" {
		return runCheck(argv[1:], os.Stdout)
	}
	if len(argv) > 0 && argv[0] == "run" {
		argv = argv[1:]
	}
	fs := flag.NewFlagSet("cts-agent", flag.ContinueOnError)
	jobID := fs.String("job", "", "job ID (overrides JOB_ID)")
	cn := fs.Int("container", -1, "container number (overrides CONTAINER_NUMBER)")
	dryRun := fs.Bool("dry-run", false, "print the plan (files, paths, command, mounts, limits) and run nothing")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(argv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil // the usage was printed
		}
		return 2, err
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
	return runJob(cfg, log)
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

func runJob(cfg config.Config, log *slog.Logger) (int, error) {
	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	hurry, release := signals(log, stop)
	defer release()

	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return 1, fmt.Errorf("work directory: %w", err)
	}
	rt, kind, err := newRuntime(ctx, cfg, log)
	if err != nil {
		return 1, fmt.Errorf("container runtime: %w", err)
	}
	// Leftovers of agents that died on this node (never those of live agents sharing the
	// runtime's root: see container.OCI.Reap and container.Docker.Reap).
	if err := rt.Reap(ctx); err != nil {
		log.Warn("reap leftover containers", "runtime", kind, "error", err)
	}
	s3c, err := transfer.NewS3Client(ctx, transfer.S3Config{
		Endpoint: cfg.S3URL, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3Secret, Region: cfg.S3Region, Insecure: cfg.S3Insecure,
	})
	if err != nil {
		return 1, fmt.Errorf("s3 client: %w", err)
	}
	sess, a, err := session.Dial(ctx, session.Config{
		ServiceURL: cfg.ServiceURL, Token: cfg.Token, Log: log,
		JournalPath: filepath.Join(cfg.WorkDir, "events-"+attemptFile.ReplaceAllString(cfg.Attempt, "_")+".journal"),
		Hello:       protocol.Hello{JobID: cfg.JobID, Container: cfg.Container, Attempt: cfg.Attempt, AgentVersion: Version},
	})
	if err != nil {
		return 1, fmt.Errorf("connect to the coordinator: %w", err)
	}
	defer sess.Close()
	log.Info("assignment received", "image", a.Image, "inputs", len(a.Inputs), "runtime", kind)
	if len(sess.Recovered()) > 0 || a.NextSeq > 1 {
		return resume(ctx, sess, a, log)
	}
	// The transfer client counts bytes per file; the runner sums them into the progress
	// reports it sends through the session. Transfers only run inside r.Run, after r is set.
	var r *runner.Runner
	xfer := transfer.New(s3c, transfer.Config{OnProgress: func(path string, n int64) { r.TransferProgress(path, n) }})
	r = runner.New(runner.Config{
		WorkDir: cfg.WorkDir, Attempt: cfg.Attempt, HostPath: cfg.HostPath, Network: cfg.Network,
		RefdataHostPath: cfg.RefdataHostPath, LiveLog: sess, Progress: sess, Hurry: hurry,
		KillGrace: cfg.Budget.ContainerStop, FinalTimeout: cfg.Budget.FinalReport,
	}, sess, xfer, rt, sess.Cancels(), log)
	if err := r.Run(ctx, a); err != nil {
		if errors.Is(err, session.ErrRefused) {
			return 1, err
		}
		return 1, fmt.Errorf("run: %w", err)
	}
	return 0, nil
}

// resume handles a restart of this attempt's agent process (the launcher restarted it, or an
// admin ran it again): a previous process already reported events. The journal's events are
// delivered; if they end the container, that is all; otherwise the container the previous
// process ran is gone (reaped above) and its run cannot be picked up, so the truthful final
// report is an error.
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
	log.Warn("the previous agent process of this attempt died mid-run: reporting an error", "next_seq", a.NextSeq)
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
